"""Properties every registered metric must satisfy; registering a metric enrols it here.

Each entry is run under its default hyper-parameters and under one
non-default value of each hyper-parameter (every choice of a ``choice``).
Outputs may be a tensor or a NamedTuple of tensors (``curve`` entries).
"""

from __future__ import annotations

import functools
import inspect

import pytest
import torch

import losslab.metrics as M
from losslab.core.registry import REGISTRY

ENTRIES = [e for e in REGISTRY.entries("metric") if e.obj.__module__.startswith("losslab.metrics")]
IDS = [e.name for e in ENTRIES]
HIGHER_IS_BETTER = {"accuracy", "ausuc"}
DIFFERENTIABLE = {"nll", "brier"}
# Metrics that take a per-class tensor besides (probs, target): every call below binds it (C = 5 here).
_GROUP = {"group_mask": torch.tensor([True, True, False, False, False])}
EXTRA_KWARGS = {"seen_unseen": _GROUP, "ausuc": _GROUP}


def _fn(entry):
    """The entry's function with its extra tensors bound."""
    return functools.partial(entry.obj, **EXTRA_KWARGS.get(entry.name, {}))


def _twin(entry):
    """The entry's twin class with its extra tensors bound."""
    return functools.partial(entry.module, **EXTRA_KWARGS.get(entry.name, {}))


def _settings(entry):
    """Defaults, then one non-default value per hyper-parameter."""
    out = [{}]
    for key, spec in entry.hyper.items():
        if spec.type == "choice":
            out += [{key: c} for c in spec.choices if c != spec.default]
        elif spec.type == "int":
            out.append({key: spec.default + 1})
    return out


CASES = [(e, s) for e in ENTRIES for s in _settings(e)]
CASE_IDS = [e.name + "".join(f"-{k}={v}" for k, v in s.items()) for e, s in CASES]


def _inputs(n=64, c=5, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * scale, dim=1).to(dtype)
    target = torch.randint(0, c, (n,), generator=g)
    return probs, target


def _close(actual, expected, **tol):
    if isinstance(expected, tuple):
        assert type(actual) is type(expected)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, **tol)
    else:
        torch.testing.assert_close(actual, expected, **tol)


def _bad_values(spec):
    if spec.type == "choice":
        return ["no_such_choice", None]
    if spec.type == "bool":
        return ["yes"]
    bad = ["3", float("nan")]
    if spec.low is not None:
        bad.append(spec.low if spec.low_open else spec.low - 1)
    if spec.high is not None:
        bad.append(spec.high if spec.high_open else spec.high + 1)
    if spec.type == "int":
        bad.append(spec.default + 0.5)
    return bad


BAD_HYPER = [(e, k, v) for e in ENTRIES for k, s in e.hyper.items() for v in _bad_values(s)]
BAD_IDS = [f"{e.name}-{k}={v!r}" for e, k, v in BAD_HYPER]


# ----------------------------------------------------------------------------- twin == function
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("entry", "hyper"), CASES, ids=CASE_IDS)
def test_streaming_twin_equals_function_on_concatenation(entry, hyper, dtype):
    probs, target = _inputs(n=97, dtype=dtype)
    metric = _twin(entry)(**hyper)
    for lo, hi in [(0, 10), (10, 11), (11, 60), (60, 97)]:
        metric.update(probs[lo:hi], target[lo:hi])
    _close(metric.compute(), _fn(entry)(probs, target, **hyper))


@pytest.mark.parametrize(("entry", "hyper"), CASES, ids=CASE_IDS)
def test_forward_gives_batch_value_and_accumulates(entry, hyper):
    probs, target = _inputs(n=40)
    metric = _twin(entry)(**hyper)
    _close(metric(probs[:25], target[:25]), _fn(entry)(probs[:25], target[:25], **hyper))
    _close(metric(probs[25:], target[25:]), _fn(entry)(probs[25:], target[25:], **hyper))
    _close(metric.compute(), _fn(entry)(probs, target, **hyper))


@pytest.mark.parametrize(("entry", "hyper"), CASES, ids=CASE_IDS)
def test_reset_forgets_earlier_batches(entry, hyper):
    probs, target = _inputs(n=40)
    metric = _twin(entry)(**hyper)
    metric.update(probs[:20], target[:20])
    metric.reset()
    metric.update(probs[20:], target[20:])
    _close(metric.compute(), _fn(entry)(probs[20:], target[20:], **hyper))


@pytest.mark.parametrize(("entry", "hyper"), CASES, ids=CASE_IDS)
def test_sample_order_invariance(entry, hyper):
    probs, target = _inputs(n=80)
    # Duplicate some rows so that ties in confidence are present too.
    probs, target = torch.cat([probs, probs[:20]]), torch.cat([target, (target[:20] + 1) % 5])
    perm = torch.randperm(probs.shape[0], generator=torch.Generator().manual_seed(1))
    _close(_fn(entry)(probs[perm], target[perm], **hyper), _fn(entry)(probs, target, **hyper))


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_float32_close_to_float64_and_half_computes_in_float32(entry):
    probs, target = _inputs(n=64)
    ref = _fn(entry)(probs, target)
    _close(_fn(entry)(probs.float(), target), _cast(ref, torch.float32), atol=1e-5, rtol=1e-5)
    for half in (torch.float16, torch.bfloat16):
        out = _fn(entry)(probs.to(half), target)
        for t in out if isinstance(out, tuple) else (out,):
            assert t.dtype == torch.float32 and torch.isfinite(t).all()


def _cast(x, dtype):
    return type(x)(*(t.to(dtype) for t in x)) if isinstance(x, tuple) else x.to(dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_cuda_matches_cpu(entry):
    probs, target = _inputs(n=64)
    out = _fn(entry)(probs.cuda(), target.cuda())
    _close(_to_cpu(out), _fn(entry)(probs, target))


def _to_cpu(x):
    return type(x)(*(t.cpu() for t in x)) if isinstance(x, tuple) else x.cpu()


# ----------------------------------------------------------------------------- input validation
def _bad_inputs():
    probs, target = _inputs(n=8, dtype=torch.float32)
    nan = probs.clone()
    nan[2, 1] = float("nan")
    negative = probs.clone()
    negative[0, :2] = torch.tensor([-0.1, probs[0, 0] + probs[0, 1] + 0.1])
    return {
        "nan_probs": (nan, target, "probs"),
        "inf_probs": (probs.masked_fill(probs == probs[1].max(), float("inf")), target, "probs"),
        "rows_not_summing_to_1": (probs * 1.1, target, "probs"),
        "negative_probs": (negative, target, "probs"),
        "label_too_large": (probs, target.clone().fill_(5), "target"),
        "label_negative": (probs, torch.cat([target[:-1], torch.tensor([-1])]), "target"),
        "batch_mismatch": (probs, target[:-1], "target"),
        "target_2d": (probs, target.unsqueeze(1), "target"),
        "float_target": (probs, target.float(), "target"),
        "probs_1d": (probs[:, 0], target, "probs"),
        "one_class": (torch.ones(8, 1), torch.zeros(8, dtype=torch.long), "probs"),
        "integer_probs": (probs.round().long(), target, "probs"),
        "not_a_tensor": (probs.tolist(), target, "probs"),
        "empty_batch": (probs[:0], target[:0], "probs"),
    }


BAD = _bad_inputs()


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_bad_inputs_raise_naming_the_argument(entry, case):
    probs, target, name = BAD[case]
    with pytest.raises(ValueError, match=f"`{name}`"):
        _fn(entry)(probs, target)
    with pytest.raises(ValueError, match=f"`{name}`"):
        _twin(entry)().update(probs, target)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_validate_args_false_skips_value_checks(entry):
    probs, target = _inputs(n=16)
    _fn(entry)(probs * 1.01, target, validate_args=False)
    _twin(entry)(validate_args=False).update(probs * 1.01, target)


# ----------------------------------------------------------------------------- hyper-parameters
@pytest.mark.parametrize(("entry", "key", "value"), BAD_HYPER, ids=BAD_IDS)
def test_bad_hyper_raises_from_function_twin_and_registry(entry, key, value):
    probs, target = _inputs(n=8)
    with pytest.raises(ValueError, match=f"`{key}`"):
        _fn(entry)(probs, target, **{key: value})
    with pytest.raises(ValueError, match=f"`{key}`"):
        _twin(entry)(**{key: value})
    with pytest.raises(ValueError, match=f"`{entry.name}.{key}`"):
        entry.resolve({key: value})


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_registry_resolve_fills_defaults_and_rejects_unknown(entry):
    assert entry.resolve() == {k: s.default for k, s in entry.hyper.items()}
    with pytest.raises(ValueError, match="no_such_hyper"):
        entry.resolve({"no_such_hyper": 1})


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_signatures_match_registry(entry):
    fn = inspect.signature(entry.obj).parameters
    init = inspect.signature(entry.module.__init__).parameters
    assert list(fn)[:2] == ["probs", "target"]
    for key, spec in entry.hyper.items():
        assert fn[key].kind is inspect.Parameter.KEYWORD_ONLY
        assert fn[key].default == spec.default, f"{entry.obj.__name__}({key}=...) default drifted from the registry"
        assert init[key].default == spec.default, f"{entry.module.__name__}({key}=...) default drifted"
    assert fn["validate_args"].default is True and init["validate_args"].default is True


# ----------------------------------------------------------------------------- docs and flags
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_docstring_template(entry):
    doc = inspect.getdoc(entry.obj)
    assert doc.splitlines()[0].endswith(".")
    for section in (".. math::", "Args:", "Returns:", "Raises:", "References:", "Example:", ">>> "):
        assert section in doc, f"{entry.obj.__name__} lacks {section!r}"
    assert entry.reference or entry.papers
    assert entry.module.__doc__ and entry.obj.__name__ in entry.module.__doc__


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_twin_flags(entry):
    cls = entry.module
    assert cls.full_state_update is False
    assert cls.higher_is_better is (entry.name in HIGHER_IS_BETTER)
    assert cls.is_differentiable is (entry.name in DIFFERENTIABLE)


def test_public_api_is_registered():
    fns = {e.obj for e in ENTRIES}
    twins = {e.module for e in ENTRIES}
    assert M.__all__ == sorted(M.__all__)
    for name in M.__all__:
        obj = getattr(M, name)
        if inspect.isfunction(obj):
            assert obj in fns, f"public function {name} is not registered"
        elif issubclass(obj, torch.nn.Module):
            assert obj in twins, f"public metric class {name} is not a registered twin"
    assert fns <= {getattr(M, n) for n in M.__all__}
    assert twins <= {getattr(M, n) for n in M.__all__}
