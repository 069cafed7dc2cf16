"""Diagnostics: measurements of a model and data that explain training dynamics.

Every diagnostic is a pure function a user calls on any model and batch, and
the same function serves as a run callback (``diagnostics:`` in a spec). The
contract (see :mod:`losslab.diagnostics._base`)::

    fn(model, inputs, target, *, loss_fn=None, generator=None, **hyper) -> float | dict[str, float]

It takes only the arguments it names, from the names in
``losslab.diagnostics._base.DIAGNOSTIC_NAMES``; a dict result is stored as one
series per key (``<name>.<key>``). Diagnostics never change the model: they
restore its mode and leave its parameters and gradients as they found them.
"""

from losslab.diagnostics._base import DIAGNOSTIC_NAMES, restore_model_state
from losslab.diagnostics.calibration import calibrated_ece
from losslab.diagnostics.difficulty import el2n_scores, el2n_summary, grand_scores, grand_summary, gwa, opposing_signals
from losslab.diagnostics.geometry import (
    collapse_metrics,
    imbalanced_collapse_geometry,
    neural_collapse,
    orthogonal_frame_deviation,
)
from losslab.diagnostics.grokking import (
    empirical_ntk,
    kernel_target_alignment,
    nlm_alignment,
    ntk_alignment,
    softmax_collapse_fraction,
    softmax_collapse_mask,
    weight_norm,
)
from losslab.diagnostics.intrinsic import SubspaceModel, intrinsic_dimension, random_projection
from losslab.diagnostics.landscape import lmc_barrier, lmc_barrier_to_init
from losslab.diagnostics.proxies import fragmentation, gradsign, hash_codes, spectral_alignment
from losslab.diagnostics.pruning import prune_accuracy
from losslab.diagnostics.quantization import quantized_accuracy
from losslab.diagnostics.sharpness import (
    edge_of_stability,
    eigenvalue_early_stop,
    hessian_max_eig,
    hessian_top_eigs,
    hessian_trace,
    hessian_vector_product,
)
from losslab.diagnostics.soups import greedy_soup, uniform_soup

__all__ = [
    "DIAGNOSTIC_NAMES",
    "SubspaceModel",
    "calibrated_ece",
    "collapse_metrics",
    "edge_of_stability",
    "eigenvalue_early_stop",
    "el2n_scores",
    "el2n_summary",
    "empirical_ntk",
    "fragmentation",
    "gradsign",
    "grand_scores",
    "grand_summary",
    "greedy_soup",
    "gwa",
    "hash_codes",
    "hessian_max_eig",
    "hessian_top_eigs",
    "hessian_trace",
    "hessian_vector_product",
    "imbalanced_collapse_geometry",
    "intrinsic_dimension",
    "kernel_target_alignment",
    "lmc_barrier",
    "lmc_barrier_to_init",
    "neural_collapse",
    "nlm_alignment",
    "ntk_alignment",
    "opposing_signals",
    "orthogonal_frame_deviation",
    "prune_accuracy",
    "quantized_accuracy",
    "random_projection",
    "restore_model_state",
    "softmax_collapse_fraction",
    "softmax_collapse_mask",
    "spectral_alignment",
    "uniform_soup",
    "weight_norm",
]
