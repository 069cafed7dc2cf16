r"""Calibrated stacking and AUSUC: the seen/unseen (or head/tail) accuracy trade-off [118].

A classifier scoring two groups of classes, ``S`` (seen, or head) and ``U``
(unseen, or tail), is usually biased towards ``S``. Calibrated stacking
subtracts a constant :math:`\gamma` from the scores of the classes in ``S``
before the argmax. Sweeping :math:`\gamma` trades accuracy on the samples of
``S`` for accuracy on those of ``U``; AUSUC is the area under that curve.

Scores and units. The metrics take probabilities (the metric contract) and work
on their logarithm: ``log p`` differs from the logits by a per-sample constant,
which changes no prediction, so a :math:`\gamma` read off these curves is in
logit units and can be applied to the logits with :func:`calibrated_stacking`.
Probabilities are floored at the dtype's smallest normal number before the log,
so underflowed classes keep finite scores.

The exact curve. For sample :math:`i` let :math:`a_i` (:math:`b_i`) be its best
score inside (outside) ``S``. It is predicted in ``S`` exactly when
:math:`\gamma < d_i = a_i - b_i`, and then as its best class there. So the
predictions change only at the breakpoints :math:`d_i`; the curve has one point
per open interval between consecutive distinct breakpoints (``G + 1`` points for
``G`` distinct values), from "everything in ``S``" to "everything in ``U``".
Samples with equal breakpoints switch together, so the curve joins their two
points with one straight segment (the expected curve over random orders of the
tie, as for ROC curves).

The twins keep every breakpoint (``cat`` state, O(N) memory).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from losslab.core.registry import register, twin
from losslab.core.validation import check_logits, check_number, check_tensor, fail
from losslab.metrics._base import ProbMetric, check_probs_target


class SeenUnseen(NamedTuple):
    """The exact seen/unseen accuracy curve, by increasing ``gamma`` (``G + 1`` points)."""

    gamma: Tensor
    """``(G + 1,)``: a calibration constant inside each point's interval (midpoints; 1 beyond the extreme breakpoints)."""
    acc_seen: Tensor
    """``(G + 1,)``: accuracy on the samples whose label is in the group (non-increasing)."""
    acc_unseen: Tensor
    """``(G + 1,)``: accuracy on the samples whose label is outside it (non-decreasing)."""


def check_group_mask(group_mask: Any, num_classes: int | None = None) -> Tensor:
    """A bool ``(C,)`` mask with at least one class in and one class out of the group."""
    check_tensor(group_mask, "group_mask")
    if group_mask.dtype != torch.bool:
        fail("group_mask", "a bool tensor", group_mask.dtype)
    if group_mask.ndim != 1 or (num_classes is not None and group_mask.shape[0] != num_classes):
        c = "C" if num_classes is None else num_classes
        fail("group_mask", f"of shape ({c},), one entry per class", f"shape {tuple(group_mask.shape)}")
    if bool(group_mask.all()) or not bool(group_mask.any()):
        fail("group_mask", "True for some classes and False for others", f"{int(group_mask.sum())} True of "
             f"{group_mask.numel()}")
    return group_mask


def _split_best(scores: Tensor, group_mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Best score and class id inside and outside the group; ties go to the lowest class id."""
    neg = torch.finfo(scores.dtype).min
    inside, outside = scores.masked_fill(~group_mask, neg), scores.masked_fill(group_mask, neg)
    i_in, i_out = inside.argmax(dim=1), outside.argmax(dim=1)
    a = scores.gather(1, i_in.unsqueeze(1)).squeeze(1)
    b = scores.gather(1, i_out.unsqueeze(1)).squeeze(1)
    return a, i_in, b, i_out


def calibrated_stacking(scores: Tensor, group_mask: Tensor, *, gamma: float, validate_args: bool = True) -> Tensor:
    r"""Predict with calibrated stacking: subtract ``gamma`` from the group's scores, then argmax.

    Use it to correct a classifier biased towards one group of classes: seen
    classes in generalised zero-shot learning, head classes under class
    imbalance. Pick ``gamma`` on held-out data, e.g. with :func:`best_harmonic_gamma`.

    .. math::
        \hat y(x) = \arg\max_{c} \; f_c(x) - \gamma\,\mathbb{1}[c \in S]

    where :math:`f_c(x)` are the scores (logits or log-probabilities; adding a
    per-sample constant changes nothing) and :math:`S` is ``group_mask``. Ties go
    to the lowest class id (``torch.argmax``). ``gamma = 0`` is the plain argmax.

    Args:
        scores: float tensor of shape ``(N, C)``, any real scores (logits).
        group_mask: bool tensor of shape ``(C,)``, True for the classes of :math:`S`.
        gamma: finite number; positive values move predictions out of :math:`S`.
        validate_args: check that ``scores`` is finite (forces a device sync).

    Returns:
        Long tensor of shape ``(N,)``, the predicted class ids.

    Raises:
        ValueError: on malformed ``scores`` or ``group_mask``, or a non-finite ``gamma``.

    References:
        [118] Chao, Changpinyo, Gong & Sha, *An Empirical Study and Analysis of Generalized
        Zero-Shot Learning for Object Recognition in the Wild*, ECCV 2016.

    Example:
        >>> scores = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.0, 0.2]])
        >>> calibrated_stacking(scores, torch.tensor([True, False, False]), gamma=0.0)
        tensor([0, 0])
        >>> calibrated_stacking(scores, torch.tensor([True, False, False]), gamma=0.6)
        tensor([0, 2])
    """
    check_logits(scores, "scores", validate_args=validate_args)
    gamma = check_number(gamma, "gamma")
    group_mask = check_group_mask(group_mask, scores.shape[1]).to(scores.device)
    return (scores - gamma * group_mask.to(scores.dtype)).argmax(dim=1)


# ----------------------------------------------------------------------------- the metric steps
def _stacking_tensor_validation(
    probs: Tensor, target: Tensor, group_mask: Tensor, validate_args: bool
) -> tuple[Tensor, Tensor, Tensor]:
    probs, target = check_probs_target(probs, target, validate_args=validate_args)
    return probs, target, check_group_mask(group_mask, probs.shape[1]).to(probs.device)


def _stacking_update(probs: Tensor, target: Tensor, group_mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample ``(breakpoint d, seen hit, unseen hit, label in group)``.

    A sample whose label is in the group is right exactly when it is predicted in
    the group (``gamma < d``) and its best class there is the label; symmetrically
    outside.
    """
    scores = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    a, i_in, b, i_out = _split_best(scores, group_mask)
    seen = group_mask[target]
    seen_hit = (seen & (i_in == target)).to(probs.dtype)
    unseen_hit = (~seen & (i_out == target)).to(probs.dtype)
    return a - b, seen_hit, unseen_hit, seen.to(probs.dtype)


def _seen_unseen_compute(d: Tensor, seen_hit: Tensor, unseen_hit: Tensor, seen: Tensor) -> SeenUnseen:
    n_seen = seen.sum()
    n_unseen = seen.numel() - n_seen
    if int(n_seen) == 0 or int(n_unseen) == 0:
        fail("target", "labels both inside and outside `group_mask` (each accuracy needs samples)",
             f"{int(n_seen)} inside and {int(n_unseen)} outside")
    breaks, group = torch.unique(d, sorted=True, return_inverse=True)
    zero = d.new_zeros(1)
    # Point k: the first k distinct breakpoints lie below gamma, so their samples are predicted outside.
    left_seen = torch.cat([zero, d.new_zeros(breaks.numel()).index_add_(0, group, seen_hit).cumsum(0)])
    got_unseen = torch.cat([zero, d.new_zeros(breaks.numel()).index_add_(0, group, unseen_hit).cumsum(0)])
    gamma = torch.cat([breaks[:1] - 1, breaks[:-1] + (breaks[1:] - breaks[:-1]) / 2, breaks[-1:] + 1])
    return SeenUnseen(gamma, (seen_hit.sum() - left_seen) / n_seen, got_unseen / n_unseen)


def _ausuc_compute(d: Tensor, seen_hit: Tensor, unseen_hit: Tensor, seen: Tensor) -> Tensor:
    _, x, y = _seen_unseen_compute(d, seen_hit, unseen_hit, seen)
    return ((x[:-1] - x[1:]) * (y[:-1] + y[1:])).sum() / 2


_REFERENCE = ("Chao, Changpinyo, Gong & Sha, *An Empirical Study and Analysis of Generalized Zero-Shot "
              "Learning for Object Recognition in the Wild*, ECCV 2016")


@register("metric", "seen_unseen", family="stacking", papers=(118,), reference=_REFERENCE, tags=("curve",))
def seen_unseen_curve(
    probs: Tensor, target: Tensor, *, group_mask: Tensor, validate_args: bool = True
) -> SeenUnseen:
    r"""The exact seen/unseen accuracy curve of calibrated stacking over all ``gamma``.

    Use it to see how much accuracy on one group of classes (seen, head) must
    be paid for accuracy on the other (unseen, tail), and to pick ``gamma``
    (:func:`best_harmonic_gamma`). :func:`ausuc` is its area.

    .. math::
        A_S(\gamma) = \frac{1}{n_S}\sum_{i: y_i \in S} \mathbb{1}[\gamma < d_i]\,\mathbb{1}[\arg\max_{c\in S} s_{ic} = y_i],
        \qquad
        A_U(\gamma) = \frac{1}{n_U}\sum_{i: y_i \notin S} \mathbb{1}[\gamma > d_i]\,\mathbb{1}[\arg\max_{c\notin S} s_{ic} = y_i]

    with :math:`s_{ic} = \log p_{ic}`, :math:`d_i = \max_{c\in S} s_{ic} - \max_{c\notin S} s_{ic}`,
    :math:`S` = ``group_mask`` and :math:`n_S, n_U` the numbers of samples labelled inside and
    outside :math:`S`. The curve has one point per interval between distinct breakpoints
    (see the module docstring; ties give one straight segment).

    Args:
        probs: float tensor of shape ``(N, C)``, rows are probability vectors.
        target: int tensor of shape ``(N,)``, class ids in ``[0, C)``, some inside and some outside the group.
        group_mask: bool tensor of shape ``(C,)``, True for the seen (head) classes.
        validate_args: check finiteness, row sums and label range (forces a device sync).

    Returns:
        :class:`SeenUnseen` ``(gamma, acc_seen, acc_unseen)``, each of shape ``(G + 1,)`` for
        ``G`` distinct breakpoints, by increasing ``gamma`` (in logit units); from
        ``(max A_S, 0)`` to ``(0, max A_U)``.

    Raises:
        ValueError: on malformed ``probs`` or ``target``, a ``group_mask`` that is not a bool
            ``(C,)`` tensor with both values, or a ``target`` with no label on one side.

    References:
        [118] Chao, Changpinyo, Gong & Sha, *An Empirical Study and Analysis of Generalized
        Zero-Shot Learning for Object Recognition in the Wild*, ECCV 2016.

    Example:
        >>> probs = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.2, 0.1, 0.7]])
        >>> curve = seen_unseen_curve(probs, torch.tensor([0, 2, 2]), group_mask=torch.tensor([True, False, False]))
        >>> curve.acc_seen, curve.acc_unseen
        (tensor([1., 1., 1., 0.]), tensor([0.0000, 0.5000, 1.0000, 1.0000]))
    """
    probs, target, group_mask = _stacking_tensor_validation(probs, target, group_mask, validate_args)
    return _seen_unseen_compute(*_stacking_update(probs, target, group_mask))


@register("metric", "ausuc", family="stacking", papers=(118,), reference=_REFERENCE)
def ausuc(probs: Tensor, target: Tensor, *, group_mask: Tensor, validate_args: bool = True) -> Tensor:
    r"""Area under the seen-unseen accuracy curve (AUSUC) of calibrated stacking.

    Use it to compare classifiers on two groups of classes (generalised
    zero-shot: seen vs unseen; long tail: head vs tail) independently of the
    calibration constant: it summarises every trade-off calibrated stacking
    can reach. It is 1 for a perfect classifier and at most :math:`\max A_S \cdot \max A_U`.

    .. math::
        \mathrm{AUSUC} = \sum_{k=0}^{G-1} \left(A_S^{(k)} - A_S^{(k+1)}\right)\frac{A_U^{(k)} + A_U^{(k+1)}}{2}

    over the exact curve :math:`(A_S^{(k)}, A_U^{(k)})_{k=0..G}` of :func:`seen_unseen_curve`
    (trapezoids: exact for its staircase, a straight segment across tied breakpoints).
    Computed on :math:`\log p`, so it equals AUSUC on the logits. Swapping the groups
    (``~group_mask``) mirrors the curve and leaves the area unchanged.

    Args:
        probs: float tensor of shape ``(N, C)``, rows are probability vectors.
        target: int tensor of shape ``(N,)``, class ids in ``[0, C)``, some inside and some outside the group.
        group_mask: bool tensor of shape ``(C,)``, True for the seen (head) classes.
        validate_args: check finiteness, row sums and label range (forces a device sync).

    Returns:
        A scalar in ``[0, 1]`` in the dtype of ``probs`` (float32 for half precision).

    Raises:
        ValueError: on malformed ``probs`` or ``target``, a ``group_mask`` that is not a bool
            ``(C,)`` tensor with both values, or a ``target`` with no label on one side.

    References:
        [118] Chao, Changpinyo, Gong & Sha, *An Empirical Study and Analysis of Generalized
        Zero-Shot Learning for Object Recognition in the Wild*, ECCV 2016.

    Example:
        >>> probs = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.2, 0.1, 0.7]])
        >>> ausuc(probs, torch.tensor([0, 2, 2]), group_mask=torch.tensor([True, False, False]))
        tensor(1.)
    """
    probs, target, group_mask = _stacking_tensor_validation(probs, target, group_mask, validate_args)
    return _ausuc_compute(*_stacking_update(probs, target, group_mask))


def best_harmonic_gamma(curve: SeenUnseen) -> tuple[Tensor, Tensor]:
    r"""The ``gamma`` of a :class:`SeenUnseen` curve with the highest harmonic-mean accuracy.

    Use it on a validation split to choose the constant for :func:`calibrated_stacking`
    (the harmonic mean is the usual single-number GZSL score); reporting it on the
    split it was chosen on is optimistic.

    .. math::
        \gamma^* = \arg\max_{\gamma} H(\gamma), \qquad H = \frac{2 A_S A_U}{A_S + A_U} \ (0 \text{ when both are } 0)

    Ties go to the smallest ``gamma``.

    Args:
        curve: a :class:`SeenUnseen` from :func:`seen_unseen_curve`.

    Returns:
        ``(gamma, harmonic)``: two scalars, the chosen constant (logit units) and its :math:`H`.

    Raises:
        ValueError: if ``curve`` is not a :class:`SeenUnseen`.

    References:
        [118] Chao, Changpinyo, Gong & Sha, ECCV 2016.

    Example:
        >>> curve = SeenUnseen(torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([0.9, 0.7, 0.0]),
        ...                    torch.tensor([0.0, 0.6, 0.8]))
        >>> best_harmonic_gamma(curve)
        (tensor(0.5000), tensor(0.6462))
    """
    if not isinstance(curve, SeenUnseen):
        fail("curve", "a SeenUnseen curve from seen_unseen_curve", type(curve).__name__)
    total = curve.acc_seen + curve.acc_unseen
    harmonic = torch.where(total > 0, 2 * curve.acc_seen * curve.acc_unseen / total.clamp_min(1e-30), 0.0)
    k = harmonic.argmax()
    return curve.gamma[k], harmonic[k]


class _StackingMetric(ProbMetric):
    """Shared twin body: the group mask, and a ``cat`` state of every per-sample statistic."""

    def __init__(self, group_mask: Tensor, *, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(validate_args=validate_args, **kwargs)
        self.group_mask = check_group_mask(group_mask)
        for name in ("breakpoint", "seen_hit", "unseen_hit", "seen"):
            self.add_state(name, [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, target: Tensor) -> None:
        probs, target, mask = _stacking_tensor_validation(probs, target, self.group_mask, self.validate_args)
        for store, value in zip((self.breakpoint, self.seen_hit, self.unseen_hit, self.seen),
                                _stacking_update(probs, target, mask)):
            store.append(value)

    def _states(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return tuple(dim_zero_cat(s) for s in (self.breakpoint, self.seen_hit, self.unseen_hit, self.seen))


@twin("metric", "seen_unseen")
class SeenUnseenCurve(_StackingMetric):
    """Streaming twin of :func:`seen_unseen_curve`; keeps every breakpoint (O(N) state)."""

    def compute(self) -> SeenUnseen:
        return _seen_unseen_compute(*self._states())


@twin("metric", "ausuc")
class AUSUC(_StackingMetric):
    """Streaming twin of :func:`ausuc`; keeps every breakpoint (O(N) state)."""

    higher_is_better: bool = True

    def compute(self) -> Tensor:
        return _ausuc_compute(*self._states())
