"""The Lightning adapter: the mixin trains with the engine's objective, the callback logs the engine's diagnostics."""

from __future__ import annotations

import csv
import importlib
import math
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from integrations._extras import require

L = require("lightning.pytorch", "lightning")
from losslab.diagnostics import hessian_max_eig  # noqa: E402
from losslab.distill import kd  # noqa: E402
from losslab.integrations.lightning import LosslabDiagnostics, LosslabObjective  # noqa: E402
from losslab.losses import cross_entropy, generalized_cross_entropy  # noqa: E402
from losslab.regularizers import confidence_penalty, output_z_loss  # noqa: E402

GCE = {"name": "gce", "params": {"q": 0.7}}


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes, labelled by a fixed random linear teacher (learnable, not trivially separable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
    return x, (x @ w).argmax(1)


class Net(LosslabObjective, L.LightningModule):
    def __init__(self, objective, lr: float = 0.5, **options) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
        self.head = nn.Linear(16, 3)  # neural collapse reads the head's weights
        self.lr = lr
        self.configure_objective(objective, num_classes=3, **options)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class Expected(L.Callback):
    """The losslab function on each training batch, with the parameters the step is about to use."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with torch.no_grad():
            self.values.append(generalized_cross_entropy(pl_module(batch[0]), batch[1], q=0.7).item())


def _trainer(tmp_path, epochs: int, callbacks=(), logger=False):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                     callbacks=list(callbacks), default_root_dir=tmp_path)


def _loader(x, y, *extra):
    return DataLoader(TensorDataset(x, y, *extra), batch_size=32, shuffle=False)


def test_logged_loss_is_the_losslab_loss_and_training_lowers_it(tmp_path):
    x, y = _data(96, 0)
    expected = Expected()
    logger = L.loggers.CSVLogger(tmp_path, name="run", version=0)
    _trainer(tmp_path, 6, [expected], logger).fit(Net(GCE), _loader(x, y))
    rows = list(csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv")))
    steps = [float(r["train_loss_step"]) for r in rows if r.get("train_loss_step")]
    epochs = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert len(steps) == len(expected.values) == 18
    assert steps == expected.values  # the logged value is the losslab function on that batch, exactly
    assert len(epochs) == 6 and epochs[-1] < 0.7 * epochs[0]


def test_composed_objective_is_loss_plus_weighted_terms():
    x, y = _data(32, 1)
    net = Net({"loss": GCE, "regularizers": [{"name": "confidence_penalty", "weight": 0.5},
                                              {"name": "output_z_loss", "weight": 2.0, "params": {"coef": 0.01}}]})
    got = net.losslab_step((x, y))
    logits = net(x)
    want = (generalized_cross_entropy(logits, y, q=0.7) + 0.5 * confidence_penalty(logits)
            + 2.0 * output_z_loss(logits, coef=0.01))
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    got.backward()  # the step carries the graph
    assert net.head.weight.grad is not None


def test_distillation_reads_the_given_teacher():
    x, y = _data(32, 5)
    teacher = Net("ce", lr=0.1)
    with torch.no_grad():
        teacher.head.weight.mul_(3.0)  # a teacher unlike the student's identical initialisation
    net = Net({"loss": {"name": "ce"}, "distill": {"name": "kd", "weight": 0.5, "params": {"temperature": 2.0}}},
              teacher=teacher)
    logits = net(x)
    want = cross_entropy(logits, y) + 0.5 * kd(logits, y, teacher(x).detach(), temperature=2.0)
    assert torch.allclose(net.losslab_step((x, y)), want, rtol=1e-6, atol=0)


def test_per_sample_term_state_moves_with_the_module_and_is_trained(tmp_path):
    x, y = _data(64, 2)
    net = Net({"loss": {"name": "ce"}, "regularizers": [{"name": "elr", "weight": 1.0}]}, train_data=(x, y))
    assert "objective_terms.0.targets" in net.state_dict()  # saved in checkpoints with the module
    _trainer(tmp_path, 2).fit(net, _loader(x, y, torch.arange(64)))
    targets = net.objective_terms[0].targets
    assert targets is net.objective.terms[0].module.targets
    assert bool((targets.sum(1) > 0).all())  # every sample's running target was updated through its index
    with pytest.raises(ValueError, match="index"):  # a batch without positions cannot feed ELR
        net.losslab_step((x[:4], y[:4]))


def test_diagnostics_callback_logs_finite_values_and_matches_a_direct_call(tmp_path):
    x, y = _data(96, 3)
    x_val, y_val = _data(64, 4)
    diags = LosslabDiagnostics(
        [{"name": "hessian_max_eig", "params": {"tol": 1e-7, "max_iters": 500}}, "neural_collapse",
         "softmax_collapse_fraction", {"name": "weight_norm", "every": 1}],
        (x_val, y_val), every=2, samples=64)
    net = Net(GCE)
    trainer = _trainer(tmp_path, 3, [diags])
    trainer.fit(net, _loader(x, y))
    lam = [row for row in diags.history if "hessian_max_eig" in row]
    assert [row["epoch"] for row in lam] == [0, 2, 3]  # the start, every 2 epochs, and the last epoch
    assert [row["epoch"] for row in diags.history] == [0, 1, 2, 3]  # weight_norm runs every epoch
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("diag/")}
    for key in ("diag/hessian_max_eig", "diag/neural_collapse.nc1", "diag/softmax_collapse_fraction.fraction",
                "diag/weight_norm.total"):
        assert key in logged and math.isfinite(logged[key]), key
    # independent call on the final model: the held-out batch in its own order, another start vector
    direct = hessian_max_eig(net, x_val, y_val, tol=1e-7, max_iters=500,
                             loss_fn=lambda z, t: generalized_cross_entropy(z, t, q=0.7, reduction="none"),
                             generator=torch.Generator().manual_seed(123))
    assert logged["diag/hessian_max_eig"] == pytest.approx(direct, rel=1e-3)
    assert lam[-1]["hessian_max_eig"] == logged["diag/hessian_max_eig"]


def test_bad_objective_and_diagnostic_names_are_one_line_errors():
    with pytest.raises(ValueError, match=r"Unknown loss 'gcee'\. Did you mean 'gce'\? Valid: .*focal"):
        Net("gcee")
    with pytest.raises(ValueError, match="Did you mean 'q'"):
        Net({"name": "gce", "params": {"qq": 0.7}})
    with pytest.raises(ValueError, match="sweep"):
        Net({"name": "gce", "sweep": {"q": [0.5, 0.7]}})
    with pytest.raises(ValueError, match="teacher"):
        Net({"loss": GCE, "distill": {"name": "kd", "teacher": {"runs": ["abc"]}}})
    with pytest.raises(ValueError, match="`teacher=`"):
        Net({"loss": GCE, "distill": {"name": "kd", "weight": 0.5}})
    with pytest.raises(ValueError, match="`objective.optimizer`"):
        Net({"name": "gce", "optimizer": {"name": "sam"}})
    with pytest.raises(ValueError, match="Did you mean 'hessian_max_eig'") as err:
        LosslabDiagnostics(["hessian_max_eigen"], _data(8, 0))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="`data`"):
        LosslabDiagnostics(["weight_norm"], "not data")


def test_missing_extra_is_a_one_line_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "losslab.integrations.lightning")
    with pytest.raises(ImportError) as err:
        importlib.import_module("losslab.integrations.lightning")
    assert str(err.value) == "losslab.integrations.lightning needs `pip install 'losslab[lightning]'`"
