"""Hypothesis fuzzing of every registered ``(logits, target)`` loss (issue 8).

The shared property test (tests/losses/test_common.py) checks each loss on one
hand-picked batch. Here Hypothesis draws the batch and the settings instead:
the batch size (down to N = 1), the class count, the dtype (float16, bfloat16,
float32, float64), the logit scale (up to 1e4), the reduction and every
hyper-parameter anywhere inside its declared range, including closed edges.
For such valid input a loss must either return a finite value of the right
shape and dtype with finite gradients, or refuse with a ``ValueError`` that
names one of its own arguments. Invalid input (an empty batch, an infinite
logit, float class ids, a class id out of range) must always be refused that
way. Adding a loss enrols it here.
"""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from losslab.core.registry import REGISTRY

OWN_SIGNATURE = {"bag", "linear", "binary", "embedding", "multilabel", "rejector", "reference"}
ENTRIES = [e for e in REGISTRY.entries("loss") if not OWN_SIGNATURE & e.tags]
IDS = [e.name for e in ENTRIES]
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _hyper_value(h, draw):
    """A value anywhere inside ``h``'s declared range (closed edges included)."""
    if h.type == "bool":
        return draw(st.booleans())
    if h.type == "choice":
        return draw(st.sampled_from(h.choices))
    if h.type not in ("float", "int"):
        return h.default
    # Unbounded sides are fuzzed over a few decades around the default, not to the float limits.
    span = max(10.0, abs(float(h.default)) * 10)
    low = h.low if h.low is not None else float(h.default) - span
    high = h.high if h.high is not None else float(h.default) + span
    if h.type == "int":
        lo = math.ceil(low) + (1 if h.low_open and float(low).is_integer() else 0)
        hi = math.floor(high) - (1 if h.high_open and float(high).is_integer() else 0)
        return draw(st.integers(lo, min(hi, lo + 50)))
    return draw(st.floats(low, high, exclude_min=h.low_open, exclude_max=h.high_open,
                          allow_nan=False, allow_infinity=False))


def _names(entry) -> set[str]:
    return set(inspect.signature(entry.obj).parameters)


def _assert_names_an_argument(entry, err: ValueError) -> None:
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", str(err)))
    assert named & (_names(entry) | {"logits", "target", "weight"}), (
        f"{entry.name}: ValueError names none of its arguments: {err}")


def _assert_finite_gradient(entry, grad, logits, target, reduction, hypers) -> None:
    """Gradients are finite, except where the true gradient lies beyond a half dtype's range.

    The gradient of a float16 leaf is stored in float16, so a true value over 65504
    can only be inf; that is the dtype's limit, not the loss's. The float32 gradient of
    the same input tells which entries those are.
    """
    if bool(torch.isfinite(grad).all()):
        return
    assert logits.dtype in (torch.float16, torch.bfloat16), f"{entry.name}: non-finite gradient with {hypers}"
    wide = logits.detach().float().requires_grad_(True)
    (ref,) = torch.autograd.grad(entry.obj(wide, target, reduction=reduction, **hypers).sum(), wide)
    assert bool(torch.isfinite(ref).all()), f"{entry.name}: non-finite float32 gradient with {hypers}"
    beyond = ref.abs() > torch.finfo(logits.dtype).max
    bad = ~torch.isfinite(grad) & ~beyond
    assert not bool(bad.any()), f"{entry.name}: non-finite gradient where float32 gives {ref[bad]} ({hypers})"


@st.composite
def _batches(draw, entry):
    n = draw(st.integers(1, 8))
    c = draw(st.integers(2, 7))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from((1e-3, 1.0, 30.0, 1e4)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, c, (n,), generator=g)
    hypers = {name: _hyper_value(h, draw) for name, h in entry.hyper.items()}
    reduction = draw(st.sampled_from(("none", "mean", "sum")))
    return logits, target, hypers, reduction


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_valid_input_gives_finite_loss_or_a_named_refusal(entry):
    @FUZZ
    @given(batch=_batches(entry))
    def check(batch):
        logits, target, hypers, reduction = batch
        logits = logits.clone().requires_grad_(True)
        try:
            out = entry.obj(logits, target, reduction=reduction, **hypers)
        except ValueError as err:
            _assert_names_an_argument(entry, err)
            return
        want_shape = (logits.shape[0],) if reduction == "none" and "batch" not in entry.tags else ()
        if reduction != "none" or "batch" not in entry.tags:
            assert tuple(out.shape) == want_shape, f"{entry.name}: shape {tuple(out.shape)} for {reduction!r}"
        assert out.dtype in (torch.float32, torch.float64), f"{entry.name}: result dtype {out.dtype}"
        assert bool(torch.isfinite(out).all()), f"{entry.name}: non-finite loss {out} with {hypers}"
        if out.requires_grad:
            (grad,) = torch.autograd.grad(out.sum(), logits, allow_unused=True)
            if grad is not None:
                _assert_finite_gradient(entry, grad, logits, target, reduction, hypers)

    check()


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_invalid_input_is_refused_by_name(entry):
    @FUZZ
    @given(batch=_batches(entry), which=st.sampled_from(("empty", "inf", "float_target", "range")))
    def check(batch, which):
        logits, target, hypers, reduction = batch
        if which == "empty":
            logits, target = logits[:0], target[:0]
        elif which == "inf":
            logits = logits.clone()
            logits[0, -1] = -math.inf if logits.shape[1] % 2 else math.inf
        elif which == "float_target":
            target = target.to(logits.dtype)
        else:
            target = target.clone()
            target[-1] = logits.shape[1] + target[-1]
        with pytest.raises(ValueError) as info:
            entry.obj(logits, target, reduction=reduction, **hypers)
        _assert_names_an_argument(entry, info.value)

    check()
