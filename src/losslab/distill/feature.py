"""ND loss: student features along the teacher's class-mean direction, with a norm at least the teacher's."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.registry import register, twin
from losslab.core.validation import (
    check_class_target,
    check_finite,
    check_floating,
    check_nonempty,
    check_number,
    check_rank,
    check_reduction,
    check_weight,
    compute_dtype,
    fail,
)
from losslab.distill._base import DistillTerm


@register("distill", "nd_loss", family="feature-kd", papers=(316,), hyper={})
def nd_loss(
    features: Tensor,
    target: Tensor,
    teacher_features: Tensor,
    *,
    class_means: Tensor,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""ND loss: reward the projection of student features on the teacher class-mean direction.

    Use it beside KD when the teacher's penultimate features are available: the
    teacher's class means act as a strong classifier, and projecting the
    student onto their directions both aligns the student's features and
    pushes their norm up to at least the teacher's.

    .. math::
        \ell_i = 1 - \frac{\langle f^s_i,\; c_{y_i} / \lVert c_{y_i} \rVert \rangle}
                         {\max(\lVert f^s_i \rVert, \lVert f^t_i \rVert)}

    with :math:`c_y` the mean teacher feature of class :math:`y` over the
    training set, :math:`f^s` the (projected) student feature and :math:`f^t`
    the teacher feature of the same sample, as in the official code. While
    :math:`\lVert f^s \rVert < \lVert f^t \rVert` the loss falls as the student's
    norm grows along :math:`c_y`; beyond it only the direction matters. The
    loss lies in ``[0, 2]`` and is invariant to positive scalings of a class
    mean, to scaling :math:`f^s, f^t` together, and to rotating all three
    together. A zero class mean has no direction and gives 1.

    Args:
        features: student features ``(N, D)``, already projected to the teacher's width.
        target: class ids ``(N,)``.
        teacher_features: teacher features ``(N, D)`` of the same batch.
        class_means: teacher class means ``(C, D)``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on mis-shaped or non-finite inputs or labels outside ``[0, C)``.

    References:
        [316] Wang, Cheng, Wu, Liu & Kong, *Improving Knowledge Distillation via
        Regularizing Feature Norm and Direction*, 2023.

    Example:
        >>> s, t = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 10.0]])
        >>> nd_loss(s, torch.tensor([0]), t, class_means=torch.tensor([[2.0, 0.0]]))
        tensor(0.7000)
    """
    features, target, teacher, means, weight = _prepare(features, target, teacher_features, class_means,
                                                        weight, reduction, validate_args)
    tiny = torch.finfo(features.dtype).tiny
    direction = means / means.norm(dim=-1, keepdim=True).clamp_min(tiny)
    projection = (features * direction[target.long()]).sum(dim=-1)
    scale = torch.maximum(features.norm(dim=-1), teacher.norm(dim=-1)).clamp_min(tiny)
    return reduce_loss(1.0 - projection / scale, reduction, weight)


def _prepare(features: Any, target: Any, teacher_features: Any, class_means: Any, weight: Any, reduction: Any,
             validate_args: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    check_reduction(reduction)
    for x, name in ((features, "features"), (teacher_features, "teacher_features"), (class_means, "class_means")):
        check_floating(x, name)
        check_rank(x, 2, name)
        if validate_args:
            check_finite(x, name)
    check_nonempty(features, "features")
    n, d = features.shape
    if teacher_features.shape != features.shape:
        fail("teacher_features", f"of shape {(n, d)} like `features` (project the student first)",
             f"shape {tuple(teacher_features.shape)}")
    if class_means.shape[1] != d or class_means.shape[0] < 1:
        fail("class_means", f"of shape (C, {d})", f"shape {tuple(class_means.shape)}")
    check_class_target(target, class_means.shape[0], n, validate_args=validate_args)
    check_weight(weight, n, validate_args=validate_args)
    dtype = compute_dtype(features)
    return (features.to(dtype), target, teacher_features.detach().to(dtype), class_means.detach().to(dtype),
            weight)


@torch.no_grad()
def teacher_class_means(teacher: nn.Module, inputs: Tensor, target: Tensor, num_classes: int | None = None,
                        *, batch_size: int = 512) -> Tensor:
    """Mean of ``teacher.features(x)`` per class ``(C, D)``, in eval mode and in batches; the mode is restored.

    A class without samples gets a zero mean (no direction).
    """
    if not hasattr(teacher, "features"):
        fail("teacher", "a module with `features(x) -> (B, D)`", type(teacher).__name__)
    c = num_classes if num_classes is not None else int(target.max()) + 1
    check_class_target(target, c, inputs.shape[0], "train_target")
    was_training = teacher.training
    teacher.eval()
    try:
        feats = torch.cat([teacher.features(inputs[i:i + batch_size]).float()
                           for i in range(0, inputs.shape[0], batch_size)])
    finally:
        teacher.train(was_training)
    sums = torch.zeros(c, feats.shape[1], dtype=feats.dtype).index_add_(0, target.long().cpu(), feats.cpu())
    counts = torch.bincount(target.long().cpu(), minlength=c).clamp_min(1).to(feats.dtype)
    return sums / counts.unsqueeze(1)


@twin("distill", "nd_loss")
class NDLoss(DistillTerm):
    """Twin of :func:`nd_loss`: teacher class means computed at setup; a projection when widths differ.

    ``feature_dim`` is the student's width; when it differs from the
    teacher's, the twin owns ``nn.Linear(feature_dim, D_t)`` (the official
    code uses BatchNorm, dropout and a linear layer; losslab keeps the linear
    layer only, a choice) and the engine trains it with the model.
    """

    name = "nd_loss"

    def __init__(self, teacher: nn.Module, train_inputs: Tensor, train_target: Tensor,
                 feature_dim: int | None = None, num_classes: int | None = None, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.register_buffer("class_means", teacher_class_means(teacher, train_inputs, train_target, num_classes))
        width = self.class_means.shape[1]
        self.projection: nn.Linear | None = None
        if feature_dim is not None and check_number(feature_dim, "feature_dim", low=1, integer=True) != width:
            self.projection = nn.Linear(feature_dim, width)

    def forward(self, features: Tensor, target: Tensor, teacher_features: Tensor) -> Tensor:
        if self.projection is not None:
            features = self.projection(features.to(self.projection.weight.dtype))
        return nd_loss(features, target, teacher_features, class_means=self.class_means.to(features.device),
                       **self.hyper)
