"""Shift conditions: covariate_shift corrupts, label_shift resamples, both only the test split."""

from __future__ import annotations

import math
import random

import pytest
import torch

from losslab.data.base import SplitData
from losslab.data.conditions.shift import (
    COVARIATE_KINDS,
    LABEL_SHIFT_KINDS,
    SEVERITY_SCALES,
    covariate_shift,
    gaussian_blur,
    label_shift,
    label_shift_counts,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n_train: int = 40, n_test: int = 30, shape=(3, 8, 8), num_classes: int = 4, seed: int = 0) -> SplitData:
    g = _gen(seed)
    return SplitData("img", 2.5 * torch.randn(n_train, *shape, generator=g) + 1.0,
                     torch.arange(n_train) % num_classes,
                     1.0 + torch.rand(n_test, *shape, generator=g),  # strictly positive: zeros come from occlusion
                     torch.arange(n_test) % num_classes, num_classes=num_classes)


def _labels(test_counts: list[int], seed: int = 0) -> SplitData:
    y_test = torch.cat([torch.full((k,), c) for c, k in enumerate(test_counts)])
    y_test = y_test[torch.randperm(len(y_test), generator=_gen(seed))]
    c = len(test_counts)
    return SplitData("lab", torch.randn(20, 3, generator=_gen(seed + 1)), torch.arange(20) % c,
                     torch.randn(len(y_test), 3, generator=_gen(seed + 2)), y_test, num_classes=c)


def _total_variation(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum())


@pytest.mark.parametrize("kind", COVARIATE_KINDS)
def test_severity_zero_is_the_identity_and_is_recorded(kind):
    data = _images()
    out = covariate_shift(data, generator=_gen(), kind=kind, severity=0)
    assert torch.equal(out.x_test, data.x_test) and torch.equal(out.y_test, data.y_test)
    rec = out.records[-1]
    assert (rec.name, rec.params, rec.summary["scale"], rec.summary["mean_abs_change"]) == \
        ("covariate_shift", {"kind": kind, "severity": 0}, 0.0, 0.0)


@pytest.mark.parametrize("kind", COVARIATE_KINDS)
def test_covariate_shift_leaves_the_train_split_bit_identical_and_is_deterministic(kind):
    data = _images()
    a = covariate_shift(data, generator=_gen(3), kind=kind, severity=4)
    b = covariate_shift(data, generator=_gen(3), kind=kind, severity=4)
    assert torch.equal(a.x_train, data.x_train) and torch.equal(a.y_train, data.y_train)
    assert torch.equal(a.y_train_clean, data.y_train_clean) and torch.equal(a.y_test, data.y_test)
    assert torch.equal(a.x_test, b.x_test) and a.x_test.shape == data.x_test.shape and a.x_test.dtype == data.x_test.dtype
    assert not torch.equal(a.x_test, data.x_test)
    assert a.records[-1].summary["mean_abs_change"] == pytest.approx(float((a.x_test - data.x_test).abs().mean()))


@pytest.mark.parametrize("kind", LABEL_SHIFT_KINDS)
def test_label_shift_leaves_the_train_split_bit_identical_and_is_deterministic(kind):
    data = _labels([30, 25, 40, 35])
    a = label_shift(data, generator=_gen(5), kind=kind, alpha=0.5, ratio=5.0)
    b = label_shift(data, generator=_gen(5), kind=kind, alpha=0.5, ratio=5.0)
    assert torch.equal(a.x_train, data.x_train) and torch.equal(a.y_train, data.y_train)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    idx = a.records[-1].changed["kept_test_index"]
    assert torch.equal(a.x_test, data.x_test[idx]) and torch.equal(a.y_test, data.y_test[idx])
    assert bool((idx[1:] > idx[:-1]).all())  # without replacement, original order


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_std_is_the_scale_times_the_training_std(severity):
    data = _images(n_train=200, n_test=400)
    out = covariate_shift(data, generator=_gen(1), kind="gaussian_noise", severity=severity)
    expected = SEVERITY_SCALES["gaussian_noise"][severity - 1] * float(data.x_train.std(correction=0))
    noise = out.x_test - data.x_test
    assert float(noise.std()) == pytest.approx(expected, rel=0.02)  # 76800 draws: std error ~0.3%
    assert abs(float(noise.mean())) < 0.02 * expected


def test_contrast_keeps_each_samples_mean_and_scales_its_deviation():
    data = _images()
    out = covariate_shift(data, generator=_gen(), kind="contrast", severity=3)
    flat_in, flat_out = data.x_test.flatten(1), out.x_test.flatten(1)
    assert torch.allclose(flat_out.mean(1), flat_in.mean(1), atol=1e-6)
    dev_in = flat_in - flat_in.mean(1, keepdim=True)
    assert torch.allclose(flat_out - flat_out.mean(1, keepdim=True), 0.35 * dev_in, atol=1e-6)


@pytest.mark.parametrize("severity", [1, 4, 5])
def test_occlusion_zeroes_the_stated_fraction_of_pixels_over_all_channels(severity):
    data = _images(shape=(3, 10, 10))
    out = covariate_shift(data, generator=_gen(2), kind="occlusion", severity=severity)
    zero = out.x_test == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # one mask for all channels
    k = math.floor(SEVERITY_SCALES["occlusion"][severity - 1] * 100 + 0.5)
    assert zero[:, 0].flatten(1).sum(1).tolist() == [k] * len(zero)
    assert torch.equal(out.x_test[~zero], data.x_test[~zero])  # the rest untouched
    assert torch.equal(out.records[-1].changed["occlusion_mask"], zero[:, 0])


def test_occlusion_on_flat_features_zeroes_the_fraction_of_features():
    data = SplitData("flat", torch.randn(10, 40), torch.arange(10) % 2, 1 + torch.rand(7, 40),
                     torch.arange(7) % 2, num_classes=2)
    out = covariate_shift(data, generator=_gen(), kind="occlusion", severity=2)
    assert (out.x_test == 0).sum(1).tolist() == [8] * 7


@pytest.mark.parametrize("shape", [(1, 9, 11), (9, 11)])
def test_blur_keeps_a_constant_image_and_smooths_a_random_one(shape):
    n = 4
    const = SplitData("c", torch.randn(6, *shape), torch.arange(6) % 2, torch.full((n, *shape), 0.7),
                      torch.arange(n) % 2, num_classes=2)
    out = covariate_shift(const, generator=_gen(), kind="blur", severity=5)
    assert torch.allclose(out.x_test, const.x_test, atol=1e-6)
    noisy = SplitData("r", torch.randn(6, *shape), torch.arange(6) % 2, torch.rand(n, *shape, generator=_gen(4)),
                      torch.arange(n) % 2, num_classes=2)
    tvs = [_total_variation(covariate_shift(noisy, generator=_gen(), kind="blur", severity=s).x_test)
           for s in range(6)]
    assert all(a > b for a, b in zip(tvs, tvs[1:])), tvs  # more blur, less total variation


def test_blur_of_an_interior_delta_is_the_outer_product_of_the_gaussian_kernel():
    sigma = 1.5
    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[0, 0, 10, 10] = 1.0
    r = math.ceil(3 * sigma)
    k = torch.tensor([math.exp(-i * i / (2 * sigma**2)) for i in range(-r, r + 1)], dtype=torch.float64)
    k = k / k.sum()
    expected = torch.zeros(21, 21, dtype=torch.float64)
    expected[10 - r:11 + r, 10 - r:11 + r] = torch.outer(k, k)
    assert torch.allclose(gaussian_blur(x, sigma)[0, 0], expected, atol=1e-12)


def test_blur_refuses_inputs_without_two_spatial_dims():
    data = SplitData("flat", torch.randn(10, 40), torch.arange(10) % 2, torch.randn(7, 40),
                     torch.arange(7) % 2, num_classes=2)
    with pytest.raises(ValueError, match=r"`kind`.*\(7, 40\)"):
        covariate_shift(data, generator=_gen(), kind="blur", severity=1)


def test_integer_inputs_are_refused():
    data = SplitData("tok", torch.randint(0, 50, (10, 8)), torch.arange(10) % 2, torch.randint(0, 50, (6, 8)),
                     torch.arange(6) % 2, num_classes=2)
    with pytest.raises(ValueError, match=r"`data`.*token ids"):
        covariate_shift(data, generator=_gen(), kind="gaussian_noise", severity=2)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"kind": "shot_noise"}, "kind"), ({"severity": 6}, "severity"), ({"severity": -1}, "severity"),
    ({"severity": 2.5}, "severity"), ({"severity": True}, "severity"), ({"severity": "3"}, "severity"),
])
def test_covariate_shift_refuses_bad_arguments_by_name(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        covariate_shift(_images(), generator=_gen(), **kwargs)
    with pytest.raises(ValueError, match="gaussian_noise.*contrast.*occlusion.*blur"):
        covariate_shift(_images(), generator=_gen(), kind="fog")


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"kind": "uniform"}, "kind"), ({"alpha": 0.0}, "alpha"), ({"alpha": -1.0}, "alpha"),
    ({"alpha": float("inf")}, "alpha"), ({"ratio": 0.5}, "ratio"), ({"ratio": "10"}, "ratio"),
])
def test_label_shift_refuses_bad_arguments_by_name(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        label_shift(_labels([5, 5, 5]), generator=_gen(), **kwargs)
    with pytest.raises(ValueError, match="dirichlet.*reversed_long_tail.*long_tail"):
        label_shift(_labels([5, 5, 5]), generator=_gen(), kind="uniform")
    with pytest.raises(ValueError, match="`generator`"):
        label_shift(_labels([5, 5, 5]), generator=None)


def _largest_remainder(n: int, priors: list[float]) -> list[int]:
    """Independent, plain-Python largest-remainder rounding of n * priors."""
    exact = [n * p for p in priors]
    floors = [math.floor(e + 1e-9) for e in exact]
    order = sorted(range(len(priors)), key=lambda c: (-(exact[c] - floors[c]), c))
    for c in order[:n - sum(floors)]:
        floors[c] += 1
    return floors


@pytest.mark.parametrize("seed", range(25))
def test_label_shift_counts_keep_the_most_samples_possible_by_brute_force(seed):
    rng = random.Random(seed)
    c = rng.choice((2, 3, 4, 5))
    available = [rng.randint(1, 12) for _ in range(c)]
    weights = [rng.random() + 0.01 for _ in range(c)]
    priors = [w / sum(weights) for w in weights]
    counts = label_shift_counts(available, priors)
    n = sum(counts)
    assert counts == _largest_remainder(n, priors)  # matches the priors exactly in counts
    best = max(m for m in range(sum(available) + 1)
               if all(k <= a for k, a in zip(_largest_remainder(m, priors), available)))
    assert n == best
    assert n >= math.floor(min(a / p for a, p in zip(available, priors)) + 1e-9)


@pytest.mark.parametrize("kind", LABEL_SHIFT_KINDS)
def test_label_shift_hits_its_priors_in_counts(kind):
    data = _labels([50, 60, 45, 70, 55])
    out = label_shift(data, generator=_gen(7), kind=kind, alpha=1.0, ratio=10.0)
    s = out.records[-1].summary
    assert s["counts_after"] == torch.bincount(out.y_test, minlength=5).tolist()
    n = s["num_kept"]
    assert n == len(out.y_test) == sum(s["counts_after"]) and sum(s["priors"]) == pytest.approx(1.0)
    assert all(abs(k - n * p) < 1 for k, p in zip(s["counts_after"], s["priors"]))
    assert all(k <= a for k, a in zip(s["counts_after"], s["counts_before"]))
    if kind != "dirichlet":
        head, tail = (s["priors"][0], s["priors"][-1]) if kind == "long_tail" else (s["priors"][-1], s["priors"][0])
        assert head / tail == pytest.approx(10.0)
        assert (s["priors"] == sorted(s["priors"], reverse=kind == "long_tail"))


def test_label_shift_ratio_one_keeps_a_balanced_test_split_balanced():
    out = label_shift(_labels([20, 20, 20]), generator=_gen(), kind="reversed_long_tail", ratio=1.0)
    assert out.records[-1].summary["counts_after"] == [20, 20, 20]


def test_dirichlet_priors_are_finite_for_any_alpha_and_skip_absent_classes():
    data = _labels([30, 0, 30, 30])
    tiny = label_shift(data, generator=_gen(), kind="dirichlet", alpha=1e-300).records[-1].summary
    assert sorted(tiny["priors"]) == [0.0, 0.0, 0.0, 1.0] and tiny["priors"][1] == 0.0
    assert tiny["num_kept"] == 30
    big = label_shift(data, generator=_gen(), kind="dirichlet", alpha=1e6).records[-1].summary
    assert big["priors"][1] == 0.0 and all(abs(p - 1 / 3) < 0.01 for i, p in enumerate(big["priors"]) if i != 1)
    draws = torch.tensor([label_shift(data, generator=_gen(s), alpha=1.0).records[-1].summary["priors"]
                          for s in range(300)])
    assert torch.allclose(draws.mean(0), torch.tensor([1 / 3, 0.0, 1 / 3, 1 / 3], dtype=draws.dtype), atol=0.05)
    # Dir(1, 1, 1) marginals are Beta(1, 2): variance 2 / (9 * 4).
    assert draws[:, [0, 2, 3]].var(0).tolist() == pytest.approx([1 / 18] * 3, rel=0.25)


def test_label_shift_counts_refuses_inconsistent_priors():
    with pytest.raises(ValueError, match="`priors`"):
        label_shift_counts([3, 3], [0.7, 0.7])
    with pytest.raises(ValueError, match="`priors`"):
        label_shift_counts([3, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="`available`"):
        label_shift_counts([3, 3, 3], [0.5, 0.5])
