"""Model builders: small classifiers for the benchmark datasets, each in the registry.

Every builder follows one contract::

    fn(input_shape: tuple[int, ...], num_classes: int, **hyper) -> nn.Module

and the module maps a batch ``x (B, *input_shape)`` to logits ``(B, num_classes)``
as ``head(features(x))``: ``features(x)`` is the penultimate representation
``(B, D)`` (what feature distillation, LDReg and probes read), ``head`` is the
final ``nn.Linear``, and ``stages()`` lists the blocks whose composition is
``features`` (where manifold mixup may mix hidden states).
Initialisation draws from torch's global RNG, so wrap construction in
:func:`losslab.core.seeding.seeded` for reproducible weights.
"""

from losslab.models.auto import build_auto, check_model_fits, choose_model, models_that_fit
from losslab.models.cnn1d import MNIST1DCNN, build_mnist1d_cnn, conv_output_length
from losslab.models.cnn2d import CNN2D, build_cnn2d
from losslab.models.embedding import EmbeddingMLP, build_embedding_mlp
from losslab.models.mlp import MLP, build_mlp
from losslab.models.resnet import PreActResNet, build_preact_resnet18
from losslab.models.scaled import ScaledModel, build_scaled
from losslab.models.wide_resnet import build_wide_resnet

__all__ = [
    "CNN2D",
    "EmbeddingMLP",
    "MLP",
    "MNIST1DCNN",
    "PreActResNet",
    "build_auto",
    "build_cnn2d",
    "build_preact_resnet18",
    "build_wide_resnet",
    "check_model_fits",
    "choose_model",
    "models_that_fit",
    "build_embedding_mlp",
    "build_mlp",
    "build_mnist1d_cnn",
    "conv_output_length",
]
