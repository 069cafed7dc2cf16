"""Batched, seeded 32x32 augmentation: random crop with padding and horizontal flip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losslab.data.augment import (
    AUGMENTATIONS,
    crop_flip,
    crop_offsets,
    flip_decisions,
    random_crop,
    random_flip,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=6, c=3, h=8, w=8, seed=1, dtype=torch.float32):
    return torch.randn(n, c, h, w, generator=_gen(seed)).to(dtype)


def _recover_offset(out_img, padded_img, h, w, padding):
    """Every (top, left) whose window of the padded image equals the output image."""
    span = range(2 * padding + 1)
    return [(t, l) for t in span for l in span if torch.equal(padded_img[:, t:t + h, l:l + w], out_img)]


# ---------------------------------------------------------------- random_crop


def test_zero_padding_is_the_identity():
    x = _images()
    for mode in ("constant", "reflect"):
        out = random_crop(x, 0, generator=_gen(), mode=mode)
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("padding, shape", [(4, (32, 32)), (2, (5, 9)), (1, (1, 1))])
def test_crop_is_a_translation_of_the_zero_padded_image(padding, shape):
    h, w = shape
    x = _images(40, 2, h, w)
    out = random_crop(x, padding, generator=_gen(3))
    padded = F.pad(x, (padding,) * 4)
    offsets = crop_offsets(40, padding, generator=_gen(3))
    for b in range(x.shape[0]):
        found = _recover_offset(out[b], padded[b], h, w, padding)
        assert tuple(offsets[b].tolist()) in found
        if h * w > 1:  # continuous random pixels: only one window matches
            assert len(found) == 1
        # the shift moves pixel (i, j) to (i + p - t, j + p - l)
        t, l = offsets[b].tolist()
        di, dj = padding - t, padding - l
        src = x[b][:, max(0, -di):h - max(0, di), max(0, -dj):w - max(0, dj)]
        dst = out[b][:, max(0, di):h - max(0, -di), max(0, dj):w - max(0, -dj)]
        assert torch.equal(src, dst)


def test_crop_of_a_constant_image_keeps_the_constant_or_the_fill():
    n, p, h, w = 200, 4, 32, 32
    x = torch.full((n, 3, h, w), 2.5)
    out = random_crop(x, p, generator=_gen(5), fill=-1.0)
    assert bool(((out == 2.5) | (out == -1.0)).all())
    # the filled border is exactly what the shift uncovers
    t, l = crop_offsets(n, p, generator=_gen(5)).T
    uncovered = h * w - (h - (t - p).abs()) * (w - (l - p).abs())
    assert torch.equal((out[:, 0] == -1.0).sum(dim=(1, 2)), uncovered)
    assert torch.equal(out[:, 0], out[:, 2])  # channels share one crop


def test_crop_offsets_are_uniform_over_the_window():
    n, p = 4000, 4
    offsets = crop_offsets(n, p, generator=_gen(7))
    assert offsets.shape == (n, 2) and offsets.dtype == torch.int64
    counts = torch.stack([torch.bincount(offsets[:, k], minlength=9) for k in range(2)])
    assert counts.shape == (2, 2 * p + 1) and int(counts.min()) > 0
    expected, sigma = n / 9, math.sqrt(n * (1 / 9) * (8 / 9))
    assert bool(((counts - expected).abs() < 4 * sigma).all())


def test_reflect_mode_crops_the_reflection_padded_image():
    x = _images(10, 2, 6, 7)
    out = random_crop(x, 3, generator=_gen(2), mode="reflect")
    padded = F.pad(x, (3,) * 4, mode="reflect")
    for b, (t, l) in enumerate(crop_offsets(10, 3, generator=_gen(2)).tolist()):
        assert torch.equal(out[b], padded[b, :, t:t + 6, l:l + 7])
    # no fill value: every output pixel is one of the image's own pixels
    for b in range(10):
        assert bool(torch.isin(out[b], x[b]).all())


def test_crop_is_deterministic_for_a_generator_state():
    x = _images(16)
    a, b = random_crop(x, 4, generator=_gen(11)), random_crop(x, 4, generator=_gen(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, random_crop(x, 4, generator=_gen(12)))
    g = _gen(11)
    first, second = random_crop(x, 4, generator=g), random_crop(x, 4, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances


# ---------------------------------------------------------------- random_flip


def test_flip_limits():
    x = _images()
    assert torch.equal(random_flip(x, generator=_gen(), p=0.0), x)
    assert torch.equal(random_flip(x, generator=_gen(), p=1.0), x.flip(-1))


def test_flip_twice_with_the_same_decisions_is_the_identity():
    x = _images(64)
    once = random_flip(x, generator=_gen(9))
    assert not torch.equal(once, x)
    assert torch.equal(random_flip(once, generator=_gen(9)), x)


def test_flip_is_per_image_and_follows_the_decisions():
    x = _images(50)
    out = random_flip(x, generator=_gen(4), p=0.5)
    flip = flip_decisions(50, generator=_gen(4), p=0.5)
    assert 0 < int(flip.sum()) < 50
    assert torch.equal(out[flip], x[flip].flip(-1)) and torch.equal(out[~flip], x[~flip])


@pytest.mark.parametrize("p", [0.5, 0.2, 0.9])
def test_empirical_flip_rate_is_p(p):
    n = 4000
    x = torch.arange(2.0).expand(n, 1, 1, 2).contiguous()  # a flipped image reads [1, 0]
    out = random_flip(x, generator=_gen(13), p=p)
    rate = float((out[:, 0, 0, 0] == 1.0).float().mean())
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_flip_is_deterministic_for_a_generator_state():
    x = _images(32)
    assert torch.equal(random_flip(x, generator=_gen(1)), random_flip(x, generator=_gen(1)))


# ---------------------------------------------------------------- crop_flip and the name table


def test_crop_flip_is_crop_then_flip_from_one_stream():
    x = _images(20)
    g = _gen(21)
    expected = random_flip(random_crop(x, 4, generator=g), generator=g)
    assert torch.equal(crop_flip(x, generator=_gen(21)), expected)
    assert torch.equal(crop_flip(x, generator=_gen(21), padding=0), random_flip(x, generator=_with_draws(21, 20)))


def _with_draws(seed, n):
    """A generator advanced past the crop draw of a batch of ``n`` (padding 0 still draws its offsets)."""
    g = _gen(seed)
    crop_offsets(n, 0, generator=g)
    return g


def test_augmentations_table():
    assert set(AUGMENTATIONS) == {"none", "flip", "crop_flip"}
    x = _images(8)
    assert AUGMENTATIONS["none"](x, _gen()) is x
    assert torch.equal(AUGMENTATIONS["flip"](x, _gen(3)), random_flip(x, generator=_gen(3)))
    assert torch.equal(AUGMENTATIONS["crop_flip"](x, _gen(3)), crop_flip(x, generator=_gen(3)))


# ---------------------------------------------------------------- dtype, device, validation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["none", "flip", "crop_flip"])
def test_dtype_and_shape_are_kept(dtype, name):
    x = _images(4, 3, 32, 32, dtype=dtype)
    out = AUGMENTATIONS[name](x, _gen())
    assert out.dtype == dtype and out.shape == x.shape and out.device == x.device
    assert bool(torch.isin(out.float(), torch.cat([x.float().flatten(), torch.zeros(1)])).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu_with_either_generator():
    x = _images(16, 3, 32, 32)
    gpu = x.cuda()
    for name in ("flip", "crop_flip"):
        on_cpu_gen = AUGMENTATIONS[name](gpu, _gen(5))
        assert on_cpu_gen.device == gpu.device
        assert torch.equal(on_cpu_gen.cpu(), AUGMENTATIONS[name](x, _gen(5)))  # the same choices
        cuda_gen = torch.Generator(device="cuda").manual_seed(5)
        assert AUGMENTATIONS[name](gpu, cuda_gen).device == gpu.device
    g1, g2 = (torch.Generator(device="cuda").manual_seed(6) for _ in range(2))
    assert torch.equal(crop_flip(gpu, generator=g1), crop_flip(gpu, generator=g2))


@pytest.mark.parametrize("call, arg", [
    (lambda: random_crop(torch.zeros(3, 8, 8), generator=_gen()), "x"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8, dtype=torch.int64), generator=_gen()), "x"),
    (lambda: random_crop([[0.0]], generator=_gen()), "x"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8), -1, generator=_gen()), "padding"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8), 1.5, generator=_gen()), "padding"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8), True, generator=_gen()), "padding"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8), 4, generator=None), "generator"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8), 4, generator=_gen(), fill=math.nan), "fill"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 8), 4, generator=_gen(), mode="wrap"), "mode"),
    (lambda: random_crop(torch.zeros(2, 3, 8, 4), 4, generator=_gen(), mode="reflect"), "padding"),
    (lambda: random_flip(torch.zeros(2, 8, 8), generator=_gen()), "x"),
    (lambda: random_flip(torch.zeros(2, 3, 8, 8), generator=_gen(), p=1.5), "p"),
    (lambda: random_flip(torch.zeros(2, 3, 8, 8), generator=_gen(), p=-0.1), "p"),
    (lambda: random_flip(torch.zeros(2, 3, 8, 8), generator=3), "generator"),
    (lambda: crop_flip(torch.zeros(2, 3, 8, 8), generator=_gen(), padding=-2), "padding"),
    (lambda: AUGMENTATIONS["none"](torch.zeros(2, 8, 8), _gen()), "x"),
    (lambda: AUGMENTATIONS["none"](torch.zeros(2, 3, 8, 8), None), "generator"),
])
def test_validation(call, arg):
    with pytest.raises(ValueError, match=f"`{arg}`") as info:
        call()
    assert "\n" not in str(info.value)
