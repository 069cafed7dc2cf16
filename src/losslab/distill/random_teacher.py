"""Random-teacher self-distillation: a student distils a frozen, randomly initialised copy of itself."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.registry import real, register, twin
from losslab.core.validation import check_number, fail
from losslab.distill._base import MIN_TEMPERATURE, DistillTerm, check_temperature, prepare, soft_cross_entropy
from losslab.distill._teacher import teacher_log_probs


@register("distill", "random_teacher", family="self-kd", papers=(290,),
          hyper={"teacher_temperature": real(1.0, MIN_TEMPERATURE, None, doc="teacher softmax temperature"),
                 "student_temperature": real(1.0, MIN_TEMPERATURE, None, doc="student softmax temperature")})
def random_teacher(
    logits: Tensor,
    target: Tensor | None,
    teacher_logits: Tensor,
    *,
    teacher_temperature: float = 1.0,
    student_temperature: float = 1.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""DINO-style cross-entropy from a frozen (random) teacher's softmax to the student's, labels unused.

    Use it to study, or exploit, the implicit regularisation of
    self-distillation without labels: the teacher is a frozen random
    initialisation, the student starts near it (:func:`init_near`) and learns
    features a linear probe can read better than the teacher's. ``target`` is
    ignored.

    .. math::
        \ell = -\sum_k \operatorname{softmax}(t / \tau_t)_k \, \log \operatorname{softmax}(s / \tau_s)_k

    The random-teacher configuration of the official code uses no centering,
    no EMA update of the teacher, no augmentation and
    :math:`\tau_t = \tau_s = 1` (the defaults here); DINO's
    :math:`\tau_t = 0.04, \tau_s = 0.1` are available through the
    hyper-parameters. For a fixed teacher the loss is smallest (the teacher's
    entropy) when :math:`s / \tau_s = t / \tau_t` up to a per-row shift.

    Args:
        logits: student outputs ``s`` ``(N, C)``.
        target: ignored (may be ``None``).
        teacher_logits: teacher outputs ``t`` ``(N, C)`` (or ``(K, N, C)``, averaged in probability).
        teacher_temperature: :math:`\tau_t > 0`.
        student_temperature: :math:`\tau_s > 0`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs or non-positive temperatures.

    References:
        [290] Sarnthein, Bachmann, Anagnostidis & Hofmann, *Random Teachers are Good Teachers*, ICML 2023.

    Example:
        >>> t = torch.tensor([[0.0, 0.0]])
        >>> random_teacher(t, None, t)  # log 2
        tensor(0.6931)
    """
    check_temperature(teacher_temperature, "teacher_temperature")
    check_temperature(student_temperature, "student_temperature")
    logits, _, teacher, weight = prepare(logits, target, teacher_logits, weight, reduction,
                                         validate_args=validate_args, need_target=False)
    p_t = teacher_log_probs(teacher, teacher_temperature).exp()
    per_sample = soft_cross_entropy(torch.log_softmax(logits / student_temperature, dim=-1), p_t)
    return reduce_loss(per_sample, reduction, weight)


@twin("distill", "random_teacher")
class RandomTeacher(DistillTerm):
    """Module twin of :func:`random_teacher` (no labels)."""

    name = "random_teacher"

    def forward(self, logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return random_teacher(logits, None, teacher_logits, **self.hyper)


@torch.no_grad()
def init_near(student: nn.Module, teacher: nn.Module, eps: float, generator: torch.Generator, *,
              variance_preserving: bool = False) -> nn.Module:
    r"""Set ``student``'s parameters to the teacher's plus ``eps`` times a fresh initialisation, in place.

    .. math::
        \theta_S = \theta_T + \varepsilon\, \tilde\theta
        \quad \text{or, variance-preserving,} \quad
        \theta_S = (\theta_T + \varepsilon\, \tilde\theta) / \sqrt{1 + \varepsilon^2}

    with :math:`\tilde\theta` a new draw of the architecture's default
    initialisation, as the official code's ``neighborhood`` student init.
    Every submodule's ``reset_parameters`` runs on a copy of the teacher under
    a private RNG seeded from ``generator`` (the global RNG is left untouched);
    a parameter owned by a module without ``reset_parameters`` gets Gaussian
    noise with that parameter's standard deviation instead. Buffers (e.g.
    batch-norm statistics) are copied from the teacher.

    Args:
        student: module to overwrite; same architecture as ``teacher``.
        teacher: the (random) teacher; unchanged.
        eps: noise scale :math:`\varepsilon \ge 0`; 0 copies the teacher.
        generator: the source of randomness.
        variance_preserving: divide by :math:`\sqrt{1 + \varepsilon^2}`.

    Returns:
        ``student``.

    Raises:
        ValueError: on mismatched architectures, a negative ``eps`` or a missing generator.

    References:
        [290] Sarnthein et al., *Random Teachers are Good Teachers*, ICML 2023.

    Example:
        >>> t, s = nn.Linear(3, 2), nn.Linear(3, 2)
        >>> _ = init_near(s, t, 0.0, torch.Generator().manual_seed(0))
        >>> bool(torch.equal(s.weight, t.weight))
        True
    """
    eps = check_number(eps, "eps", low=0.0)
    if not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator", type(generator).__name__)
    s_params, t_params = list(student.parameters()), list(teacher.parameters())
    if [p.shape for p in s_params] != [p.shape for p in t_params]:
        fail("student", "the same architecture (parameter shapes) as `teacher`", f"{len(s_params)} parameters")
    noise = _fresh_init(teacher, generator)
    scale = math.sqrt(1.0 + eps**2) if variance_preserving else 1.0
    for p_s, p_t, p_n in zip(s_params, t_params, noise):
        p_s.copy_((p_t + eps * p_n.to(device=p_t.device, dtype=p_t.dtype)) / scale)
    for b_s, b_t in zip(student.buffers(), teacher.buffers()):
        b_s.copy_(b_t)
    return student


def _fresh_init(teacher: nn.Module, generator: torch.Generator) -> list[Tensor]:
    """A new default initialisation of ``teacher``'s architecture, one tensor per parameter."""
    fresh = copy.deepcopy(teacher)
    covered: set[int] = set()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
    out = []
    for p in fresh.parameters():
        if id(p) not in covered:
            std = float(p.float().std()) if p.numel() > 1 else 1.0
            p = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype) * std
        out.append(p.detach())
    return out
