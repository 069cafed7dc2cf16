"""Optimizer wrappers and optimizers, all stepped as ``optimizer.step(closure)``.

Registry entries of kind ``optimizer`` hold the class. Tag ``wraps``: built
as ``cls(base_optimizer, **hyper)`` around an existing ``torch.optim`` optimizer
(SAM, ⊥Grad, AdaGC, UDIM, gradual pruning, quantization-aware training). Tag
``standalone``: built as ``cls(params, lr=..., weight_decay=..., **hyper)`` (Grams, FRUGAL).
"""

from losslab.optim.adagc import AdaGC
from losslab.optim.closure import BatchClosure
from losslab.optim.frugal import FRUGAL
from losslab.optim.gradual_pruning import GradualPruning
from losslab.optim.grams import Grams
from losslab.optim.perp_grad import PerpGrad
from losslab.optim.quantization_aware import QuantizationAware
from losslab.optim.sam import SAM, sam_perturbation
from losslab.optim.udim import UDIM

__all__ = ["SAM", "UDIM", "AdaGC", "BatchClosure", "FRUGAL", "GradualPruning", "Grams", "PerpGrad",
           "QuantizationAware", "sam_perturbation"]
