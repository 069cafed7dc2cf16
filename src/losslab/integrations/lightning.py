"""PyTorch Lightning adapter: a module mixin that trains with a losslab objective, and a diagnostics callback.

``pip install 'losslab[lightning]'``. The objective is the engine's
(:class:`~losslab.engine.objective.Objective`: ``loss + Σ w·regularizer +
w·distill``, optionally on mixed batches), and the callback runs the engine's
:class:`~losslab.engine.diagnostics.DiagnosticRunner`, so a component behaves
here as it does in a spec::

    import lightning as L
    from losslab.integrations.lightning import LosslabDiagnostics, LosslabObjective

    class LitNet(LosslabObjective, L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(20, 3)
            self.configure_objective({"name": "gce", "params": {"q": 0.7}}, num_classes=3)

        def forward(self, x):
            return self.net(x)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_epochs=5, callbacks=[LosslabDiagnostics(["hessian_max_eig"], (x_val, y_val))])
    trainer.fit(LitNet(), train_loader)   # logs train_loss and diag/hessian_max_eig
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.seeding import derive_seed, make_generator
from losslab.core.validation import check_number, check_tensor, fail
from losslab.data.base import SplitData
from losslab.engine.diagnostics import DiagnosticRunner
from losslab.integrations._common import AdapterObjective, build_objective, diagnostic_configs, gather, missing_extra

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import rank_zero_warn
except ImportError:
    raise missing_extra("losslab.integrations.lightning", "lightning") from None

__all__ = ["LosslabDiagnostics", "LosslabObjective", "unpack_batch"]


def unpack_batch(batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(inputs, target, index)`` from ``(inputs, target)``, ``(inputs, target, index)`` or a dict with those keys.

    ``index`` (positions in the training set) is needed only by terms with per-sample
    buffers (ELR, PS-KD); it is None when the batch does not carry it.
    """
    if isinstance(batch, Mapping):
        if "inputs" not in batch or "target" not in batch:
            fail("batch", "a dict with keys 'inputs', 'target' (and optionally 'index')", sorted(batch))
        parts = (batch["inputs"], batch["target"], batch.get("index"))
    elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        parts = (batch[0], batch[1], batch[2] if len(batch) == 3 else None)
    else:
        fail("batch", "(inputs, target), (inputs, target, index) or a dict", type(batch).__name__)
    inputs, target, index = parts
    check_tensor(inputs, "batch inputs")
    check_tensor(target, "batch target")
    if index is not None:
        check_tensor(index, "batch index")
    return inputs, target, index


class LosslabObjective:
    """Mixin for a ``LightningModule``: ``self.objective`` is a losslab objective, and ``training_step`` uses it.

    Put it before ``LightningModule`` in the bases and call :meth:`configure_objective` in
    ``__init__`` once the network exists. ``training_step`` returns :meth:`losslab_step`;
    override it to add your own terms. The objective's own state (ELR's per-sample
    targets, an extra head) is registered as ``self.objective_terms``, so it moves with
    the module, is saved in its checkpoints and appears in ``self.parameters()`` for
    ``configure_optimizers``. Feature-reading terms, embedding losses and the geometry
    diagnostics need ``features(x)`` and a ``head`` (an ``nn.Linear``) on the module,
    with ``forward(x) = head(features(x))``.
    """

    objective: AdapterObjective | None = None
    losslab_log_name: str = "train_loss"

    def configure_objective(self, objective: str | Mapping[str, Any], *, num_classes: int,
                            train_data: tuple[Tensor, Tensor] | None = None,
                            teacher: nn.Module | Sequence[nn.Module] = (), seed: int = 0,
                            device: str | torch.device | None = None, log_name: str = "train_loss") -> None:
        """Build ``self.objective`` from a description, as in a spec's ``objectives:`` entry.

        Args:
            objective: ``"gce"``, ``{"name": "gce", "params": {"q": 0.7}}`` or a composed
                ``{"loss": ..., "regularizers": [...], "distill": ..., "mixing": ...}``.
            num_classes: ``C``.
            train_data: the whole training set ``(inputs, target)``, for per-sample terms.
            teacher: frozen teacher module(s) for a distillation term.
            seed: seeds mixing and every sampling term.
            device: where the objective lives; build on the training device when a term samples.
            log_name: the key :meth:`losslab_step` logs the loss under.

        Raises:
            ValueError: on a bad description or argument (see :func:`losslab.integrations._common.build_objective`).
        """
        if not isinstance(self, pl.LightningModule):
            fail("self", "a lightning.pytorch.LightningModule (put LosslabObjective before it in the bases)",
                 type(self).__name__)
        if not isinstance(log_name, str) or not log_name:
            fail("log_name", "a non-empty string", repr(log_name))
        built = build_objective(objective, self, num_classes=num_classes, train_data=train_data, teacher=teacher,
                                seed=seed, device=device)
        self.objective, self.losslab_log_name, self._losslab_seed = built, log_name, seed
        # A term holding this module would make the module tree cyclic; such a term stays unregistered.
        own = [t.module for t in built.terms if all(m is not self for m in t.module.modules())]
        self.objective_terms = nn.ModuleList(own)

    def losslab_step(self, batch: Any, *, log: bool = True) -> Tensor:
        """The objective on one batch (with its graph), logged as ``log_name`` per step and per epoch."""
        objective = self.objective
        if objective is None:
            raise ValueError("Expected `configure_objective(...)` to be called in __init__ before training, "
                             "but `self.objective` is not set.")
        inputs, target, index = unpack_batch(batch)
        trainer = self._trainer
        epochs = trainer.max_epochs if trainer is not None and (trainer.max_epochs or 0) > 0 else None
        mixed = objective.draw(self, inputs, target)
        loss = objective(self, inputs, (target,), index, mixed=mixed, epoch=self.current_epoch + 1, epochs=epochs,
                         step=self.global_step)
        if log and trainer is not None:
            self.log(self.losslab_log_name, loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                     batch_size=len(target))
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.losslab_step(batch)

    def on_fit_start(self) -> None:
        """Move the objective's state to the training device; re-seed mixing there (no step was drawn yet)."""
        super().on_fit_start()
        if self.objective is None:
            return
        self.objective.to(self.device)
        gen = self.objective.generator
        if gen is not None and gen.device != self.device:
            self.objective.generator = make_generator(derive_seed(self._losslab_seed, "mixing"), self.device)


class LosslabDiagnostics(pl.Callback):
    """Runs losslab diagnostics on a held-out batch at the start and every ``every`` epochs, and logs them.

    Values go through ``pl_module.log`` (``on_epoch``) as ``{prefix}{label}`` (a dict result
    as ``{prefix}{label}.{key}``), the start-of-training values to the trainer's loggers at
    step 0, and all of them to :attr:`history`. A diagnostic that fails logs NaN and warns once;
    training goes on. With a :class:`LosslabObjective` module, loss-based diagnostics (sharpness)
    use the objective's per-sample loss, else cross-entropy.

    Args:
        diagnostics: registry names (``"hessian_max_eig"``, ``"neural_collapse"``,
            ``"softmax_collapse_fraction"``, ...) or spec entries ``{"name", "params", "label", "every",
            "samples"}``.
        data: held-out ``(inputs, target)`` tensors, or a DataLoader of ``(inputs, target, ...)`` batches.
        every: epochs between measurements (the last epoch is always measured).
        samples: examples a diagnostic sees (a fixed subset drawn once from ``seed``).
        test_data: optional test pair or loader for diagnostics that read ``test_inputs``; ``data`` otherwise.
        num_classes: ``C``; the width of the module's output when None.
        seed: seeds the subsets and the randomised estimators.
        at_start: also measure the initial model (epoch 0).
        prefix: prepended to every logged key.
    """

    def __init__(self, diagnostics: str | Mapping[str, Any] | Iterable[str | Mapping[str, Any]], data: Any, *,
                 every: int = 1, samples: int = 512, test_data: Any = None, num_classes: int | None = None,
                 seed: int = 0, at_start: bool = True, prefix: str = "diag/") -> None:
        super().__init__()
        check_number(every, "every", low=1, integer=True)
        check_number(samples, "samples", low=2, integer=True)
        check_number(seed, "seed", low=0, integer=True)
        if num_classes is not None:
            check_number(num_classes, "num_classes", low=2, integer=True)
        if not isinstance(at_start, bool):
            fail("at_start", "true or false", repr(at_start))
        if not isinstance(prefix, str):
            fail("prefix", "a string", type(prefix).__name__)
        self.configs = diagnostic_configs(diagnostics, every=every, samples=samples)
        limit = max(c["samples"] for c in self.configs)
        self.inputs, self.target = gather(data, limit, "data")
        self.test = None if test_data is None else gather(test_data, limit, "test_data")
        self.num_classes, self.seed, self.at_start, self.prefix = num_classes, seed, at_start, prefix
        self.history: list[dict[str, float]] = []
        self.runner: DiagnosticRunner | None = None
        self._warned: set[str] = set()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.runner = self._runner(pl_module)
        if self.at_start:
            values = self._measure(pl_module, epoch=0, step=trainer.global_step, last=False)
            logged = {self.prefix + k: v for k, v in values.items()}
            for logger in trainer.loggers:  # self.log is not allowed before the first epoch's results exist
                logger.log_metrics(logged, step=trainer.global_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.runner is None:
            return
        epoch = trainer.current_epoch + 1
        last = epoch == trainer.max_epochs or trainer.should_stop
        values = self._measure(pl_module, epoch=epoch, step=trainer.global_step, last=last)
        for key, value in values.items():
            pl_module.log(self.prefix + key, value, on_step=False, on_epoch=True)

    def _runner(self, pl_module: pl.LightningModule) -> DiagnosticRunner:
        device = pl_module.device
        num_classes = self.num_classes
        if num_classes is None:
            with torch.no_grad():
                was = pl_module.training
                pl_module.eval()
                num_classes = int(pl_module(self.inputs[:1].to(device)).shape[-1])
                pl_module.train(was)
        x_test, y_test = self.test if self.test is not None else (self.inputs, self.target)
        data = SplitData(name="held-out", x_train=self.inputs, y_train=self.target, x_test=x_test, y_test=y_test,
                         num_classes=num_classes)
        objective = getattr(pl_module, "objective", None)
        loss_fn = objective.per_sample if isinstance(objective, AdapterObjective) else None
        return DiagnosticRunner(self.configs, data, pl_module, device, self.seed, loss_fn)

    def _measure(self, pl_module: pl.LightningModule, *, epoch: int, step: int, last: bool) -> dict[str, float]:
        values = self.runner.run(pl_module, epoch=epoch, step=step, last=last)
        if values:
            self.history.append({"epoch": epoch, "step": step, **values})
        for label, error in self.runner.errors.items():
            if label not in self._warned:
                self._warned.add(label)
                rank_zero_warn(f"losslab diagnostic {label!r} failed ({error}); it is logged as NaN.")
        return values
