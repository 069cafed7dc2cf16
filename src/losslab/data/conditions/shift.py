"""Distribution-shift conditions: the model trains on the source distribution and is tested on a shifted one.

Unlike every other condition these touch *only the test split* and leave the
train split bit-identical: :func:`covariate_shift` corrupts the test inputs
(noise, contrast, occlusion, blur; the corruption families of [54] and the
severity ladder of ImageNet-C), :func:`label_shift` resamples the test split to
new class priors (Lipton et al., 2018). Training and validation therefore see
only the source distribution, as in single-source domain generalisation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.core.registry import choice, integer, real, register
from losslab.core.validation import check_choice, check_number, fail
from losslab.data.base import ConditionRecord, SplitData
from losslab.data.conditions._common import check_condition_inputs, class_counts

COVARIATE_KINDS = ("gaussian_noise", "contrast", "occlusion", "blur")
LABEL_SHIFT_KINDS = ("dirichlet", "reversed_long_tail", "long_tail")

#: Per-kind scale at severity 1..5 (index ``severity - 1``); severity 0 is the identity.
#: gaussian_noise: noise std in units of the training inputs' std; contrast: factor c
#: of ``m + c (x - m)``; occlusion: fraction of features (pixels) zeroed; blur: sigma in pixels.
SEVERITY_SCALES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.1, 0.2, 0.35, 0.5, 0.8),
    "contrast": (0.75, 0.5, 0.35, 0.25, 0.15),
    "occlusion": (0.1, 0.2, 0.3, 0.45, 0.6),
    "blur": (0.5, 0.75, 1.0, 1.5, 2.0),
}
_EPS = 1e-9  # keeps float error (3 * (1/3) = 0.9999999999999999) off a floor


@register("condition", "covariate_shift", family="shift", papers=(54,),
          reference="Hendrycks & Dietterich, Benchmarking Neural Network Robustness to Common Corruptions "
                    "and Perturbations, ICLR 2019, arXiv:1903.12261 (five severities per corruption).",
          hyper={"kind": choice("gaussian_noise", COVARIATE_KINDS, doc="corruption applied to every test input"),
                 "severity": integer(3, 0, 5, doc="0 = identity, 1..5 = ImageNet-C-style severity")})
def covariate_shift(data: SplitData, *, generator: torch.Generator, kind: str = "gaussian_noise",
                    severity: int = 3) -> SplitData:
    r"""Corrupt every test input; the train split is untouched.

    Use it to ask which objective degrades least when the inputs at test time
    drift away from the training inputs (robustness to common corruptions,
    single-source domain generalisation [54]). With :math:`s` = ``severity`` and
    :math:`a_s` = ``SEVERITY_SCALES[kind][s - 1]``, each test sample :math:`x` becomes

    .. math::
        \text{gaussian\_noise: } x + a_s\,\hat\sigma_{\text{train}}\,\varepsilon,\ \varepsilon \sim \mathcal N(0, I)
        \qquad \text{contrast: } m + a_s (x - m),\ m = \operatorname{mean}(x)

    occlusion: a uniformly drawn :math:`\lfloor a_s F + 1/2 \rfloor` of the sample's
    :math:`F` features are set to 0 (for images ``(N, C, H, W)`` pixels, one mask over
    the channels); blur: a Gaussian blur of std :math:`a_s` pixels over the last two
    dims (separable kernel of radius :math:`\lceil 3 a_s \rceil`, edges replicated,
    so a constant image is unchanged). :math:`\hat\sigma_{\text{train}}` is the std
    of all training input values, so a severity means the same on every dataset.
    ``severity=0`` returns the test inputs unchanged (and still records it).

    Args:
        data: the split; its float test inputs ``x_test (M, *input_shape)`` are corrupted.
            ``blur`` needs images ``(M, C, H, W)`` or ``(M, H, W)``.
        generator: CPU ``torch.Generator``, the only source of randomness (noise, occlusion masks).
        kind: one of ``"gaussian_noise"``, ``"contrast"``, ``"occlusion"``, ``"blur"``.
        severity: integer in ``[0, 5]``.

    Returns:
        A new :class:`SplitData` with the same train split and corrupted ``x_test`` (same
        shape and dtype), and a record with ``changed={"test_abs_change": (M,)}`` (mean
        absolute change per test sample; plus ``"occlusion_mask"`` bool ``(M, H, W)`` or
        ``(M, *input_shape)`` for occlusion) and ``summary`` holding ``kind``, ``severity``,
        ``scale`` (:math:`a_s`, 0 at severity 0), ``train_std``, ``num_test`` and ``mean_abs_change``.

    Raises:
        ValueError: on an unknown ``kind``, a ``severity`` outside ``{0, ..., 5}``, ``blur``
            on inputs without two spatial dims, integer inputs (token ids), fewer than two
            classes, or a bad generator.

    References:
        [54] Crafting Distribution Shifts for Validation and Training in Single Source Domain
        Generalization (noise, blur and contrast shifts of the source images).
        Hendrycks & Dietterich, *Benchmarking Neural Network Robustness to Common Corruptions
        and Perturbations*, ICLR 2019, arXiv:1903.12261 (severities 1..5).

    Example:
        >>> data = SplitData("toy", torch.randn(50, 4), torch.arange(50) % 2,
        ...                  torch.ones(6, 4), torch.arange(6) % 2, num_classes=2)
        >>> out = covariate_shift(data, generator=torch.Generator().manual_seed(0), kind="contrast", severity=2)
        >>> torch.equal(out.x_train, data.x_train), out.records[-1].summary["scale"]
        (True, 0.5)
        >>> out.x_test.mean(dim=1).tolist()  # contrast keeps each sample's mean
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    check_choice(kind, "kind", COVARIATE_KINDS)
    severity = check_number(severity, "severity", low=0, high=5, integer=True)
    check_condition_inputs(data, generator)
    x = data.x_test
    if not x.dtype.is_floating_point or not data.x_train.dtype.is_floating_point:
        fail("data", "a split with floating-point inputs (covariate_shift corrupts feature values; "
                     "integer inputs such as token ids cannot be corrupted)", f"{x.dtype} inputs")
    if kind == "blur" and x.dim() not in (3, 4):
        fail("kind", "'gaussian_noise', 'contrast' or 'occlusion' for inputs without two spatial dims "
                     "('blur' needs images (N, C, H, W) or (N, H, W))", f"'blur' on inputs of shape {tuple(x.shape)}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(work)
    train_std = float(data.x_train.to(work).std(correction=0)) if data.x_train.numel() else 0.0
    scale = SEVERITY_SCALES[kind][severity - 1] if severity else 0.0
    changed: dict[str, Tensor] = {}
    if severity == 0:
        out = xf
    elif kind == "gaussian_noise":
        out = xf + (scale * train_std) * torch.randn(xf.shape, generator=generator, dtype=work)
    elif kind == "contrast":
        mean = xf.reshape(len(xf), -1).mean(dim=1).reshape(-1, *([1] * (xf.dim() - 1)))
        out = mean + scale * (xf - mean)
    elif kind == "occlusion":
        mask = occlusion_mask(xf.shape, scale, generator)
        changed["occlusion_mask"] = mask
        out = xf.masked_fill(mask.unsqueeze(1) if xf.dim() == 4 else mask, 0.0)
    else:
        out = gaussian_blur(xf, scale)
    x_new = x if severity == 0 else out.to(x.dtype)
    per_sample = (x_new.to(work) - xf).abs().reshape(len(xf), -1).mean(dim=1) if len(xf) else xf.new_zeros(0)
    changed["test_abs_change"] = per_sample
    summary = {"kind": kind, "severity": severity, "scale": scale, "train_std": train_std,
               "num_test": int(len(x)), "mean_abs_change": float(per_sample.mean()) if len(x) else 0.0}
    record = ConditionRecord("covariate_shift", {"kind": kind, "severity": severity}, changed, summary)
    return data.replace(record, x_test=x_new)


def occlusion_mask(shape: tuple[int, ...] | torch.Size, fraction: float, generator: torch.Generator) -> Tensor:
    r"""Boolean mask zeroing :math:`k = \lfloor \text{fraction}\cdot F + 1/2 \rfloor` uniformly drawn features per sample.

    Args:
        shape: input shape ``(N, *input_shape)``; for images ``(N, C, H, W)`` the mask is over
            pixels ``(N, H, W)`` (shared by the channels), otherwise over all features.
        fraction: share of features zeroed, in ``[0, 1]``.
        generator: CPU ``torch.Generator``.

    Returns:
        Bool tensor ``(N, H, W)`` for 4-D shapes, else ``shape``, with exactly ``k`` True per sample.

    Example:
        >>> occlusion_mask((3, 10), 0.3, torch.Generator().manual_seed(0)).sum(dim=1).tolist()
        [3, 3, 3]
    """
    fraction = check_number(fraction, "fraction", low=0.0, high=1.0)
    shape = tuple(shape)
    per = (shape[0], *shape[2:]) if len(shape) == 4 else shape
    n, f = per[0], math.prod(per[1:])
    k = int(math.floor(fraction * f + 0.5))
    # Rank of each feature in a random permutation per sample: the k lowest ranks are occluded.
    ranks = torch.rand(n, f, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < k).reshape(per)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    r"""Blur the last two dims of ``x`` with a normalised Gaussian of std ``sigma`` pixels.

    Separable: one 1-D convolution along W then one along H, kernel
    :math:`k_i \propto e^{-i^2 / 2\sigma^2}`, :math:`|i| \le \lceil 3\sigma \rceil`, edges
    replicated (a constant image stays constant).

    Args:
        x: float ``(N, C, H, W)`` or ``(N, H, W)``.
        sigma: blur std in pixels, ``> 0``.

    Returns:
        The blurred tensor, same shape and dtype.

    Example:
        >>> gaussian_blur(torch.ones(1, 5, 5), 1.0).allclose(torch.ones(1, 5, 5))
        True
    """
    sigma = check_number(sigma, "sigma", low=0.0, low_open=True)
    if x.dim() not in (3, 4):
        fail("x", "images (N, C, H, W) or (N, H, W)", f"shape {tuple(x.shape)}")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    h, w = x.shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(x.shape)


def label_shift_counts(available: list[int], priors: list[float]) -> list[int]:
    r"""Per-class counts of the largest resample that matches ``priors`` exactly, without replacement.

    For a size :math:`n` the counts are the largest-remainder rounding of
    :math:`n\pi` (floors :math:`\lfloor n\pi_c \rfloor`, then one more to the
    :math:`n - \sum_c \lfloor n\pi_c \rfloor` classes with the largest remainders,
    ties to the lower class id), so :math:`|k_c - n\pi_c| < 1` and :math:`\sum_c k_c = n`.
    The chosen :math:`n` is the largest for which every :math:`k_c \le a_c`; it is at
    least :math:`\lfloor \min_{c:\pi_c>0} a_c/\pi_c \rfloor` (where :math:`n\pi_c \le a_c`
    for every class).

    Args:
        available: samples per class ``a``, length ``C``.
        priors: target class priors ``pi``, length ``C``, non-negative, summing to 1, and
            zero wherever ``available`` is 0.

    Returns:
        A list of ``C`` ints, the counts to keep.

    Raises:
        ValueError: on mismatched lengths, negative or non-normalised priors, or a positive
            prior on a class with no sample.

    Example:
        >>> label_shift_counts([10, 10, 10], [0.5, 0.3, 0.2])
        [10, 6, 4]
        >>> label_shift_counts([5, 100], [0.5, 0.5])
        [5, 5]
    """
    a = torch.tensor(available, dtype=torch.float64)
    p = torch.tensor(priors, dtype=torch.float64)
    if a.dim() != 1 or a.shape != p.shape or (a < 0).any():
        fail("available", f"{len(priors)} non-negative class counts", repr(available))
    if not torch.isfinite(p).all() or (p < 0).any() or abs(float(p.sum()) - 1.0) > 1e-6:
        fail("priors", "non-negative class priors summing to 1", repr(priors))
    if ((p > 0) & (a == 0)).any():
        fail("priors", "zero on every class with no sample", repr(priors))
    support = p > 0
    n_low = math.floor(float((a[support] / p[support]).min()) + _EPS)
    n_high = min(int(a.sum()), math.floor(float(((a[support] + 1) / p[support]).min()) + _EPS))
    n_low = min(n_low, n_high)
    # Every feasible n lies in [n_low, n_high] (floor(n pi_c) <= a_c forces n pi_c < a_c + 1); scan it
    # downward in blocks and stop at the first size whose rounding fits.
    for top in range(n_high, n_low - 1, -4096):
        ns = torch.arange(top, max(n_low, top - 4095) - 1, -1, dtype=torch.float64)
        counts = _largest_remainder(ns, p)
        ok = (counts <= a).all(dim=1).nonzero()
        if ok.numel():
            return counts[int(ok[0, 0])].long().tolist()
    raise AssertionError("unreachable: n_low always fits")  # pragma: no cover


def _largest_remainder(ns: Tensor, p: Tensor) -> Tensor:
    """Largest-remainder rounding of ``ns[:, None] * p`` to rows summing to ``ns``; float64 ``(K, C)``."""
    exact = ns[:, None] * p[None, :]
    floors = torch.floor(exact + _EPS)
    remainder = (exact - floors).clamp(min=0.0)
    missing = (ns - floors.sum(dim=1)).round()
    order = torch.sort(-remainder, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(p.numel()).expand_as(order).contiguous())
    return floors + (rank < missing[:, None]).to(floors.dtype)


@register("condition", "label_shift", family="shift",
          reference="Lipton, Wang & Smola, Detecting and Correcting for Label Shift with Black Box "
                    "Predictors, ICML 2018, arXiv:1802.03916.",
          hyper={"kind": choice("dirichlet", LABEL_SHIFT_KINDS, doc="how the test class priors are set"),
                 "alpha": real(1.0, 0.0, None, low_open=True,
                               doc="Dirichlet concentration (small = far from uniform), for kind=dirichlet"),
                 "ratio": real(10.0, 1.0, None, doc="head / tail prior ratio, for the long-tail kinds")})
def label_shift(data: SplitData, *, generator: torch.Generator, kind: str = "dirichlet", alpha: float = 1.0,
                ratio: float = 10.0) -> SplitData:
    r"""Resample the test split to new class priors; the train split is untouched.

    Use it to ask which objective's predictions (and calibration) survive a change
    of :math:`p(y)` with :math:`p(x \mid y)` fixed, the label-shift setting of
    Lipton et al. (2018). Priors :math:`\pi` over the classes present in the test
    split (absent classes get 0):

    .. math::
        \text{dirichlet: } \pi \sim \operatorname{Dir}(\alpha \mathbf 1), \qquad
        \text{long\_tail: } \pi_c \propto \rho^{-c/(C-1)}, \qquad
        \text{reversed\_long\_tail: } \pi_c \propto \rho^{-(C-1-c)/(C-1)}

    with :math:`\rho` = ``ratio`` (``long_tail`` has the order of the train condition of
    that name, class 0 the head; ``reversed_long_tail`` makes the train split's tail the
    test split's head, a standard stress test when combined with it). The counts are
    :func:`label_shift_counts` (the most test samples whose class counts are the
    largest-remainder rounding of :math:`n\pi`), drawn without replacement from the
    generator and kept in their original order. The Dirichlet draw uses
    :math:`G = G_1 U^{1/\alpha}` with :math:`G_1 \sim \Gamma(\alpha + 1)`, in log space,
    so tiny ``alpha`` gives a one-hot prior rather than NaN.

    Args:
        data: the split; its test part ``x_test (M, ...)``, ``y_test (M,)`` is resampled.
        generator: CPU ``torch.Generator``, the only source of randomness.
        kind: ``"dirichlet"``, ``"reversed_long_tail"`` or ``"long_tail"``.
        alpha: Dirichlet concentration, ``> 0`` (read for ``kind="dirichlet"``).
        ratio: head / tail prior ratio, ``>= 1`` (read for the long-tail kinds; 1 = uniform).

    Returns:
        A new :class:`SplitData` with ``M' <= M`` test samples and a record with
        ``changed={"kept_test_index": int64 (M',)}`` (ascending, into the previous test
        split) and ``summary`` holding ``kind``, ``priors`` (length ``C``), ``counts_before``,
        ``counts_after``, ``num_before`` and ``num_kept``.

    Raises:
        ValueError: on an unknown ``kind``, ``alpha <= 0``, ``ratio < 1``, fewer than two
            classes, or a bad generator.

    References:
        Lipton, Wang & Smola, *Detecting and Correcting for Label Shift with Black Box
        Predictors*, ICML 2018, arXiv:1802.03916.

    Example:
        >>> data = SplitData("toy", torch.zeros(8, 2), torch.arange(8) % 4,
        ...                  torch.zeros(40, 2), torch.arange(40) % 4, num_classes=4)
        >>> out = label_shift(data, generator=torch.Generator().manual_seed(0), kind="reversed_long_tail", ratio=8.0)
        >>> out.records[-1].summary["counts_after"], torch.equal(out.x_train, data.x_train)
        ([1, 3, 5, 10], True)
    """
    check_choice(kind, "kind", LABEL_SHIFT_KINDS)
    alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
    ratio = check_number(ratio, "ratio", low=1.0)
    check_condition_inputs(data, generator)
    before = class_counts(data.y_test, data.num_classes)
    present = torch.tensor(before) > 0
    c = data.num_classes
    if kind == "dirichlet":
        weights = torch.zeros(c, dtype=torch.float64)
        weights[present] = _dirichlet(int(present.sum()), alpha, generator)
    else:
        steps = torch.arange(c, dtype=torch.float64) / (c - 1)
        weights = ratio ** -(steps if kind == "long_tail" else steps.flip(0))
        weights = weights * present
    priors = (weights / weights.sum()).tolist()
    counts = label_shift_counts(before, priors)
    kept = []
    for cls, k in enumerate(counts):
        members = (data.y_test == cls).nonzero().squeeze(1)
        kept.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    kept_index = torch.cat(kept).sort().values
    summary = {"kind": kind, "priors": priors, "counts_before": before, "counts_after": counts,
               "num_before": int(len(data.y_test)), "num_kept": int(kept_index.numel())}
    record = ConditionRecord("label_shift", {"kind": kind, "alpha": alpha, "ratio": ratio},
                             {"kept_test_index": kept_index}, summary)
    return data.replace(record, x_test=data.x_test[kept_index], y_test=data.y_test[kept_index])


def _dirichlet(k: int, alpha: float, generator: torch.Generator) -> Tensor:
    """One draw of Dir(alpha 1_k), float64 (k,), all randomness from ``generator``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    g1 = np.random.default_rng(seed).gamma(alpha + 1.0, size=k)
    u = torch.rand(k, generator=generator, dtype=torch.float64).clamp(min=1e-300)
    # alpha * log G = alpha * log G1 + log U: finite for any alpha > 0; subtract the max before dividing.
    z = alpha * torch.from_numpy(np.log(g1)) + torch.log(u)
    return torch.softmax((z - z.max()) / alpha, dim=0)
