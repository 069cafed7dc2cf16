"""Compression: unstructured pruning [63, 140] and weight quantization, as pure functions on models and tensors.

Pruning (:mod:`losslab.compress.pruning`) ranks weights by magnitude, LAMP or at
random and masks them globally or per layer; quantization
(:mod:`losslab.compress.quantization`) rounds weights to a few bits. The
diagnostics that measure a model's robustness to both live in
:mod:`losslab.diagnostics`.
"""

from losslab.compress.pruning import (
    PRUNE_METHODS,
    cubic_sparsity,
    global_masks,
    lamp_scores,
    layerwise_masks,
    magnitude_scores,
    prunable_weights,
    prune,
    pruned,
    random_scores,
    sparsity_of,
)
from losslab.compress.quantization import (
    bit_ops,
    count_macs,
    fake_quantize,
    pareto_front,
    quantize_weights,
    quantized_activations,
    quantized_weights,
)

__all__ = [
    "PRUNE_METHODS",
    "bit_ops",
    "count_macs",
    "cubic_sparsity",
    "fake_quantize",
    "global_masks",
    "lamp_scores",
    "layerwise_masks",
    "magnitude_scores",
    "pareto_front",
    "prunable_weights",
    "prune",
    "pruned",
    "quantize_weights",
    "quantized_activations",
    "quantized_weights",
    "random_scores",
    "sparsity_of",
]
