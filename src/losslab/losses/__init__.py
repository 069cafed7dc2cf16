"""Losses: pure functions with thin ``nn.Module`` twins, each in the registry.

Every loss follows one contract::

    fn(logits: Tensor[N, C], target: Tensor[N] | Tensor[N, C], *,
       reduction="mean", weight=None, validate_args=True, **hyper) -> Tensor
"""

from losslab.losses.classification import (
    CrossEntropyLoss,
    LabelSmoothingCrossEntropyLoss,
    cross_entropy,
    label_smoothing_cross_entropy,
)
from losslab.losses.confusion import AnyLoss, anyloss
from losslab.losses.cosine import NormalizedSoftmaxLoss, normalized_softmax_loss
from losslab.losses.coverage import PassAtNLoss, pass_at_n_loss
from losslab.losses.ensloss import EnsLoss, ensloss
from losslab.losses.focal import FocalLoss, focal_loss
from losslab.losses.linear_ce import LinearCrossEntropyLoss, linear_cross_entropy
from losslab.losses.multilabel import (
    DecoupledSoftmaxLoss,
    MacroAUCPairwiseLoss,
    MacroAUCReweightedLoss,
    decoupled_softmax,
    macro_auc_pairwise,
    macro_auc_reweighted,
)
from losslab.losses.pairwise import PairwiseSoftmaxLoss, pairwise_softmax
from losslab.losses.preference import DPOLoss, RPOLoss, dpo_loss, rpo_loss
from losslab.losses.proportions import (
    BagLevelLoss,
    EasyLLPLoss,
    InstanceLevelLoss,
    InterpolatingBagLoss,
    ProportionLoss,
    bag_level_loss,
    easyllp_loss,
    instance_level_loss,
    interpolating_bag_loss,
    proportion_loss,
)
from losslab.losses.rejection import FixedPredictorRejectLoss, fixed_predictor_reject_loss
from losslab.losses.reweighting import KLDROLoss, LossReweightingLoss, kl_dro_loss, loss_reweighting
from losslab.losses.robust import (
    CompSumLoss,
    GeneralizedCrossEntropyLoss,
    LDRKLLoss,
    SymmetricCrossEntropyLoss,
    comp_sum_loss,
    generalized_cross_entropy,
    ldr_kl_loss,
    symmetric_cross_entropy,
)
from losslab.losses.spherical import ZLoss, z_loss
from losslab.losses.stablemax import StableMaxCrossEntropyLoss, stablemax_cross_entropy
from losslab.losses.unlearning import NPOLoss, npo_loss
from losslab.losses.z_error import ZErrorLoss, z_error_loss

__all__ = [
    "AnyLoss",
    "BagLevelLoss",
    "CompSumLoss",
    "CrossEntropyLoss",
    "DPOLoss",
    "DecoupledSoftmaxLoss",
    "EasyLLPLoss",
    "EnsLoss",
    "FixedPredictorRejectLoss",
    "FocalLoss",
    "GeneralizedCrossEntropyLoss",
    "InstanceLevelLoss",
    "InterpolatingBagLoss",
    "KLDROLoss",
    "LDRKLLoss",
    "LabelSmoothingCrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "LossReweightingLoss",
    "MacroAUCPairwiseLoss",
    "MacroAUCReweightedLoss",
    "NPOLoss",
    "NormalizedSoftmaxLoss",
    "PairwiseSoftmaxLoss",
    "PassAtNLoss",
    "ProportionLoss",
    "RPOLoss",
    "StableMaxCrossEntropyLoss",
    "SymmetricCrossEntropyLoss",
    "ZErrorLoss",
    "ZLoss",
    "anyloss",
    "bag_level_loss",
    "comp_sum_loss",
    "cross_entropy",
    "decoupled_softmax",
    "dpo_loss",
    "easyllp_loss",
    "ensloss",
    "fixed_predictor_reject_loss",
    "focal_loss",
    "generalized_cross_entropy",
    "instance_level_loss",
    "interpolating_bag_loss",
    "kl_dro_loss",
    "label_smoothing_cross_entropy",
    "ldr_kl_loss",
    "linear_cross_entropy",
    "loss_reweighting",
    "macro_auc_pairwise",
    "macro_auc_reweighted",
    "normalized_softmax_loss",
    "npo_loss",
    "pairwise_softmax",
    "pass_at_n_loss",
    "proportion_loss",
    "rpo_loss",
    "stablemax_cross_entropy",
    "symmetric_cross_entropy",
    "z_error_loss",
    "z_loss",
]
