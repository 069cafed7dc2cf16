"""Unstructured weight pruning: global magnitude [63], LAMP [140], layer-wise and random masks.

Pure functions compute scores and masks on a ``{layer name: weight}`` dict; the
model-level helpers apply them. :func:`prune` goes through
``torch.nn.utils.prune`` (masks persist through fine-tuning and compose when
pruning again; ``torch.nn.utils.prune.remove`` makes them permanent), while
:func:`pruned` zeroes weights in place for one measurement and restores the
exact tensors afterwards.

A *layer* is an ``nn.Linear`` or ``nn.Conv{1,2,3}d`` module; only its ``weight``
is prunable (biases and normalisation parameters are few and left dense).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.utils.prune as torch_prune
from torch import Tensor, nn

from losslab.compress._layers import WEIGHT_LAYERS
from losslab.core.validation import check_choice, check_number, check_tensor, fail

PRUNE_METHODS = ("global_magnitude", "lamp", "layerwise_magnitude", "random")

Scores = Mapping[str, Tensor]


def prunable_weights(model: nn.Module) -> dict[str, Tensor]:
    r"""The effective weight of every ``nn.Linear`` / ``nn.Conv{1,2,3}d`` layer, by module name.

    Use it to see what :func:`prune` would act on. A layer already pruned through
    ``torch.nn.utils.prune`` contributes :math:`W_{\text{orig}} \odot M`, computed
    now (the module's ``weight`` attribute is only refreshed at its next forward).

    Args:
        model: any module; a bare layer is named ``"layer"``.

    Returns:
        ``{name: weight}`` in module order, weights detached, shapes as in the layers.

    Raises:
        ValueError: on a non-module ``model`` or one without a prunable layer.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?
        A Case Study on Global Magnitude Pruning*, 2024.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
        >>> {k: tuple(v.shape) for k, v in prunable_weights(net).items()}
        {'0': (4, 3), '2': (2, 4)}
    """
    return {name: _effective_weight(m) for name, m in _layers(model).items()}


def magnitude_scores(weights: Scores) -> dict[str, Tensor]:
    r"""Magnitude scores :math:`|w|` [63]: the ranking of global and layer-wise magnitude pruning.

    Args:
        weights: ``{name: tensor}`` of floating weights, any shapes.

    Returns:
        ``{name: |w|}`` with the same shapes and dtypes.

    Raises:
        ValueError: on an empty dict, a non-floating or empty tensor, or NaN.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024.

    Example:
        >>> magnitude_scores({"a": torch.tensor([-2.0, 1.0])})["a"]
        tensor([2., 1.])
    """
    return {name: w.detach().abs() for name, w in _check_weights(weights, "weights").items()}


def lamp_scores(weights: Scores) -> dict[str, Tensor]:
    r"""Layer-adaptive magnitude-based pruning (LAMP) scores [140].

    Use them instead of :math:`|w|` for global pruning: ranking by LAMP picks
    layer-wise sparsities that bound the model-level :math:`\ell_2` distortion,
    without hyper-parameters, and never empties a layer (its largest weight scores 1).

    Within a layer, index the weights so that :math:`|W[1]| \le \dots \le |W[n]|`;

    .. math::
        \operatorname{score}(u) = \frac{W[u]^2}{\sum_{v \ge u} W[v]^2}

    Properties: each layer's maximum is 1; scores of non-zero weights lie in
    :math:`(0, 1]`; a layer rescaled by :math:`c \ne 0` gets the same scores; and
    the within-layer order is the magnitude order. Tied magnitudes (which the
    paper's strict ordering leaves undefined) all get the score of the last one
    in the sorted order, so equal weights score equally and the order stays
    exactly the magnitude order. An all-zero tail scores 0 (0/0 taken as 0).
    Computed in float64.

    Args:
        weights: ``{name: tensor}`` of floating weights, any shapes.

    Returns:
        ``{name: scores}``, float64, same shapes.

    Raises:
        ValueError: on an empty dict, a non-floating or empty tensor, or NaN.

    References:
        [140] Lee et al., *Layer-adaptive Sparsity for the Magnitude-based Pruning*, ICLR 2021.

    Example:
        >>> lamp_scores({"a": torch.tensor([3.0, -1.0, 2.0])})["a"]
        tensor([1.0000, 0.0714, 0.3077], dtype=torch.float64)
    """
    return {name: _lamp_one(w) for name, w in _check_weights(weights, "weights").items()}


def random_scores(weights: Scores, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    r"""Uniform random scores :math:`U(0, 1)`: the random-pruning baseline.

    Args:
        weights: ``{name: tensor}`` whose shapes (and device) the scores take.
        generator: the source of randomness (the global one when None).

    Returns:
        ``{name: scores}``, float32, same shapes.

    Raises:
        ValueError: on bad ``weights`` or a ``generator`` that is not a ``torch.Generator``.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024 (its random baseline).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> tuple(random_scores({"a": torch.zeros(2, 3)}, g)["a"].shape)
        (2, 3)
    """
    weights = _check_weights(weights, "weights")
    _check_generator(generator)
    return {name: torch.rand(w.shape, generator=generator, device=w.device) for name, w in weights.items()}


def global_masks(scores: Scores, sparsity: float, *, min_keep: int = 0) -> dict[str, Tensor]:
    r"""Keep the globally highest-scoring entries across all layers [63], each layer keeping at least ``min_keep``.

    Use it for global magnitude pruning (with :func:`magnitude_scores`), LAMP
    (with :func:`lamp_scores`) or random pruning. ``min_keep`` is [63]'s minimum
    threshold against layer collapse.

    With :math:`T` entries in all, exactly :math:`k = \operatorname{round}((1 - s)\,T)`
    are kept (Python rounding). First each layer reserves its
    :math:`\min(\text{min\_keep}, n_\ell)` highest-scoring entries; the remaining
    :math:`k - R` slots go to the highest scores among the other entries. So the
    global count stays exact: the extra weights a small layer needs come out of
    the lowest kept scores of the rest. Without ``min_keep`` this is plain
    top-:math:`k`. Ties are broken deterministically by position (layers in dict
    order, entries in flattened order, earlier first). A score of :math:`-\infty`
    marks an entry to prune first.

    Args:
        scores: ``{name: tensor}`` of real scores, any shapes, no NaN.
        sparsity: the fraction :math:`s \in [0, 1)` of entries to prune.
        min_keep: the least entries each layer keeps, at least 0.

    Returns:
        ``{name: mask}``, bool, same shapes; True marks a kept weight.

    Raises:
        ValueError: on bad ``scores`` or ``sparsity``, or a ``min_keep`` whose
            reservations exceed :math:`k`.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024.

    Example:
        >>> m = global_masks({"a": torch.tensor([5.0, 4.0]), "b": torch.tensor([1.0, 2.0])}, 0.5, min_keep=1)
        >>> m["a"].tolist(), m["b"].tolist()
        ([True, False], [False, True])
    """
    scores = _check_weights(scores, "scores")
    sparsity = _check_sparsity(sparsity)
    min_keep = check_number(min_keep, "min_keep", low=0, integer=True)
    flat = torch.cat([s.detach().reshape(-1).to(device="cpu", dtype=torch.float64) for s in scores.values()])
    total = flat.numel()
    keep = round((1.0 - sparsity) * total)
    reserved = torch.zeros(total, dtype=torch.bool)
    offset = 0
    for s in scores.values():
        n = s.numel()
        reserved[offset + _top(flat[offset:offset + n], min(min_keep, n))] = True
        offset += n
    n_reserved = int(reserved.sum())
    if n_reserved > keep:
        fail("min_keep", f"small enough that the layers' reserved {n_reserved} entries fit in the {keep} kept "
             f"at sparsity {sparsity:g}", min_keep)
    free = (~reserved).nonzero().squeeze(1)
    reserved[free[_top(flat[free], keep - n_reserved)]] = True
    return _unflatten(reserved, scores)


def layerwise_masks(scores: Scores, sparsity: float) -> dict[str, Tensor]:
    r"""Keep the highest-scoring :math:`\operatorname{round}((1 - s)\,n_\ell)` entries of every layer separately.

    Use it for uniform layer-wise magnitude pruning, the baseline that global
    pruning [63] and LAMP [140] are compared against. Ties are broken by position
    (earlier first).

    Args:
        scores: ``{name: tensor}`` of real scores, any shapes, no NaN.
        sparsity: the per-layer fraction :math:`s \in [0, 1)` to prune.

    Returns:
        ``{name: mask}``, bool, same shapes; True marks a kept weight.

    Raises:
        ValueError: on bad ``scores`` or ``sparsity``.

    References:
        [140] Lee et al., *Layer-adaptive Sparsity for the Magnitude-based Pruning*, ICLR 2021.

    Example:
        >>> layerwise_masks({"a": torch.tensor([1.0, 3.0, 2.0, 0.5])}, 0.5)["a"].tolist()
        [False, True, True, False]
    """
    scores = _check_weights(scores, "scores")
    sparsity = _check_sparsity(sparsity)
    out = {}
    for name, s in scores.items():
        flat = s.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        mask[_top(flat, round((1.0 - sparsity) * flat.numel()))] = True
        out[name] = mask.reshape(s.shape).to(s.device)
    return out


def cubic_sparsity(step: int, *, final: float, initial: float = 0.0, start: int = 0, steps: int,
                   every: int = 1) -> float:
    r"""The gradual-pruning schedule of [63] (after Zhu and Gupta): sparsity at training step ``step``.

    Use it to prune during training instead of once: prune ``steps`` times, every
    ``every`` steps from step ``start``, fast at first and slowly at the end.

    .. math::
        s_t = s_f + (s_0 - s_f)\Big(1 - \frac{t' - t_0}{n\,\Delta t}\Big)^3, \qquad
        t' = t_0 + \Delta t \Big\lfloor \frac{t - t_0}{\Delta t} \Big\rfloor

    for :math:`t_0 \le t \le t_0 + n\Delta t`; :math:`s_0` before and :math:`s_f`
    after. The sparsity changes only at the pruning steps :math:`t'`, and both
    endpoints are returned exactly.

    Args:
        step: the current step :math:`t \ge 0`.
        final: :math:`s_f \in [0, 1)`.
        initial: :math:`s_0 \in [0, s_f]`.
        start: :math:`t_0 \ge 0`.
        steps: the number of pruning events :math:`n \ge 1`.
        every: :math:`\Delta t \ge 1` steps between events.

    Returns:
        The target sparsity, a float in :math:`[s_0, s_f]`, non-decreasing in ``step``.

    Raises:
        ValueError: naming the argument out of range.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024.

    Example:
        >>> [cubic_sparsity(t, final=0.9, steps=4, every=10) for t in (0, 10, 25, 40, 99)]
        [0.0, 0.5203125, 0.7875, 0.9, 0.9]
    """
    step = check_number(step, "step", low=0, integer=True)
    final = check_number(final, "final", low=0.0, high=1.0, high_open=True)
    initial = check_number(initial, "initial", low=0.0, high=final)
    start = check_number(start, "start", low=0, integer=True)
    steps = check_number(steps, "steps", low=1, integer=True)
    every = check_number(every, "every", low=1, integer=True)
    if step <= start:
        return float(initial)
    done = min((step - start) // every, steps)
    if done in (0, steps):  # the endpoints exactly, free of rounding in the closed form
        return float(initial if done == 0 else final)
    return float(final + (initial - final) * (1.0 - done / steps) ** 3)


def prune(model: nn.Module, sparsity: float, *, method: str = "global_magnitude", min_keep: int = 0,
          generator: torch.Generator | None = None) -> dict[str, Tensor]:
    r"""Prune the model's ``nn.Linear`` / ``nn.Conv`` weights to ``sparsity`` through ``torch.nn.utils.prune``.

    Use it for one-shot pruning before fine-tuning, or repeatedly with
    :func:`cubic_sparsity` for gradual pruning: the masks persist while training
    (``weight = weight_orig * weight_mask``) and ``torch.nn.utils.prune.remove``
    makes them permanent. Pruning an already pruned model ranks its current
    (masked) weights; entries already masked are pruned first, so the combined
    mask hits ``sparsity`` exactly when it is at least the current sparsity.

    ``method``: ``"global_magnitude"`` = :func:`global_masks` of
    :func:`magnitude_scores` [63]; ``"lamp"`` = :func:`global_masks` of
    :func:`lamp_scores` [140]; ``"layerwise_magnitude"`` = :func:`layerwise_masks`
    of :func:`magnitude_scores`; ``"random"`` = :func:`global_masks` of
    :func:`random_scores`.

    Args:
        model: a network with at least one prunable layer (changed in place).
        sparsity: the fraction :math:`s \in [0, 1)` of prunable weights to zero.
        method: one of ``PRUNE_METHODS``.
        min_keep: [63]'s minimum per layer, for the global methods (must be 0 for ``"layerwise_magnitude"``).
        generator: the randomness of ``"random"``.

    Returns:
        ``{name: mask}``, the bool masks now in force (True = kept).

    Raises:
        ValueError: on a bad ``model``, ``sparsity``, ``method``, ``min_keep`` or ``generator``.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024.
        [140] Lee et al., *Layer-adaptive Sparsity for the Magnitude-based Pruning*, ICLR 2021.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> masks = prune(net, 0.75, method="lamp")
        >>> sum(int(m.sum()) for m in masks.values()), sparsity_of(net)["overall"]
        (20, 0.75)
    """
    masks = _masks(model, sparsity, method, min_keep, generator)
    layers = _layers(model)
    for name, mask in masks.items():
        torch_prune.custom_from_mask(layers[name], "weight", mask)
    return {name: layers[name].weight_mask.bool() for name in masks}


def sparsity_of(model: nn.Module) -> dict[str, float]:
    r"""The fraction of zero weights in each prunable layer and over all of them (``"overall"``).

    .. math::
        s_\ell = \frac{\#\{w \in W_\ell : w = 0\}}{n_\ell}, \qquad
        s = \frac{\sum_\ell \#\{w \in W_\ell : w = 0\}}{\sum_\ell n_\ell}

    Args:
        model: a network with at least one prunable layer.

    Returns:
        ``{name: s_l}`` per layer, plus ``"overall"``.

    Raises:
        ValueError: on a non-module ``model`` or one without a prunable layer.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> _ = layer.weight.data.copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        >>> sparsity_of(layer)
        {'layer': 0.75, 'overall': 0.75}
    """
    weights = prunable_weights(model)
    zeros = {name: int((w == 0).sum()) for name, w in weights.items()}
    out = {name: zeros[name] / w.numel() for name, w in weights.items()}
    out["overall"] = sum(zeros.values()) / sum(w.numel() for w in weights.values())
    return out


@contextlib.contextmanager
def pruned(model: nn.Module, sparsity: float, *, method: str = "global_magnitude", min_keep: int = 0,
           generator: torch.Generator | None = None) -> Iterator[dict[str, Tensor]]:
    r"""Zero the pruned weights in place for a measurement, then restore the exact original tensors.

    Use it in diagnostics (accuracy after one-shot pruning) where the model must
    be left as found: no reparametrisation, no hooks, and on exit every prunable
    weight is bit-identical to before (even if the body raised). The masks are
    those :func:`prune` would compute with the same arguments.

    Args:
        model: a network with at least one prunable layer.
        sparsity, method, min_keep, generator: as in :func:`prune`.

    Yields:
        ``{name: mask}``, the bool masks applied inside the block.

    Raises:
        ValueError: as :func:`prune`.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?*, 2024.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Linear(4, 4)
        >>> before = net.weight.clone()
        >>> with pruned(net, 0.5):
        ...     sparsity_of(net)["overall"]
        0.5
        >>> torch.equal(net.weight, before)
        True
    """
    masks = _masks(model, sparsity, method, min_keep, generator)
    layers = _layers(model)
    saved = {}
    for name, mask in masks.items():
        module = layers[name]
        param = module.weight_orig if hasattr(module, "weight_orig") else module.weight
        saved[name] = (param, param.detach().clone(), module.weight)
        with torch.no_grad():
            param.masked_fill_(~mask, 0.0)
            if param is not module.weight:  # a reparametrised layer: refresh its derived weight too
                module.weight = module.weight_orig * module.weight_mask
    try:
        yield masks
    finally:
        with torch.no_grad():
            for name, (param, original, derived) in saved.items():
                param.copy_(original)
                if param is not derived:
                    layers[name].weight = derived


def _masks(model: nn.Module, sparsity: float, method: str, min_keep: int,
           generator: torch.Generator | None) -> dict[str, Tensor]:
    """Validate the arguments of :func:`prune` / :func:`pruned` and compute their masks."""
    weights = prunable_weights(model)
    sparsity = _check_sparsity(sparsity)
    check_choice(method, "method", PRUNE_METHODS)
    min_keep = check_number(min_keep, "min_keep", low=0, integer=True)
    _check_generator(generator)
    if method == "layerwise_magnitude":
        if min_keep:
            fail("min_keep", "0 with method='layerwise_magnitude' (every layer keeps its own share)", min_keep)
        return layerwise_masks(magnitude_scores(weights), sparsity)
    if method == "random":
        scores = random_scores(weights, generator)
    else:
        scores = (lamp_scores if method == "lamp" else magnitude_scores)(weights)
    layers = _layers(model)
    for name, module in layers.items():
        if hasattr(module, "weight_mask"):  # already pruned entries go first, so the combined mask is exact
            scores[name] = scores[name].masked_fill(module.weight_mask == 0, -math.inf)
    return global_masks(scores, sparsity, min_keep=min_keep)


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__)
    layers = {name or "layer": m for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
    if not layers:
        fail("model", "a network with at least one nn.Linear or nn.Conv1d/2d/3d layer", type(model).__name__)
    return layers


def _effective_weight(module: nn.Module) -> Tensor:
    if hasattr(module, "weight_orig"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def _lamp_one(w: Tensor) -> Tensor:
    sq = w.detach().to(torch.float64).reshape(-1) ** 2
    ordered, _ = torch.sort(sq)
    suffix = ordered.flip(0).cumsum(0).flip(0)  # suffix[u] = sum_{v >= u} ordered[v]
    # every member of a tie group takes the denominator of the group's last member
    last = torch.searchsorted(ordered, sq, right=True) - 1
    denom = suffix[last]
    scores = torch.where(denom > 0, sq / denom.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(sq))
    return scores.reshape(w.shape)


def _top(flat: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest entries of a 1-D tensor; ties go to the earlier index."""
    if k <= 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.sort(flat, descending=True, stable=True).indices[:k]


def _unflatten(flat_mask: Tensor, like: Scores) -> dict[str, Tensor]:
    out, offset = {}, 0
    for name, s in like.items():
        out[name] = flat_mask[offset:offset + s.numel()].reshape(s.shape).to(s.device)
        offset += s.numel()
    return out


def _check_weights(weights: object, name: str) -> dict[str, Tensor]:
    if not isinstance(weights, Mapping) or not weights:
        fail(name, "a non-empty dict of {layer name: tensor}", type(weights).__name__)
    for key, w in weights.items():
        check_tensor(w, f"{name}[{key!r}]")
        if not w.dtype.is_floating_point or w.numel() == 0:
            fail(f"{name}[{key!r}]", "a non-empty floating tensor", f"{w.dtype} of shape {tuple(w.shape)}")
        if bool(torch.isnan(w).any()):
            fail(f"{name}[{key!r}]", "free of NaN", f"{int(torch.isnan(w).sum())} NaN value(s)")
    return dict(weights)


def _check_sparsity(sparsity: object) -> float:
    return float(check_number(sparsity, "sparsity", low=0.0, high=1.0, high_open=True))


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
