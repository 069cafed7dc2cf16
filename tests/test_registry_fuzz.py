"""Hypothesis fuzzing of every registered loss, distillation loss, metric and batch regularizer (issue 8).

The shared property tests (tests/losses/test_common.py and friends) check each
entry on a hand-picked batch. Here Hypothesis draws the batch and the settings:
the batch size (down to N = 1), the class count (down to C = 2), the dtype
(float16, bfloat16, float32, float64), the scale of the inputs (up to 1e4), the
reduction and every hyper-parameter anywhere inside its declared range, closed
edges included. Three properties hold for every entry:

- valid input gives a finite value with finite gradients, or a ``ValueError``
  that names one of the entry's own arguments;
- invalid input (an empty batch, NaN, +Inf or -Inf in a float input, a label
  out of range, a target of the wrong shape) is always refused that way;
- a hyper-parameter beyond its declared bounds is refused naming it.

Any other exception (an ``IndexError`` or ``RuntimeError`` from inside torch)
fails. Each entry's inputs come from a builder below; an entry with none must
be listed in ``NOT_FUZZED`` with the reason, so a new entry cannot slip past.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import losslab.distill  # noqa: F401  (registers its entries)
import losslab.losses  # noqa: F401
import losslab.metrics  # noqa: F401
import losslab.regularizers  # noqa: F401
from losslab.core.registry import REGISTRY

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
EXAMPLES = 25
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Case:
    """One call's inputs: positional tensors by name, plus what the corruptions may touch."""

    args: dict[str, torch.Tensor]
    floats: list[str]  # float inputs: gradients are taken, NaN/Inf are planted
    label: str | None = None  # class ids (or 0/1 multi-hot) checked against their range
    label_high: int = 0  # first invalid label value
    batch: list[str] = field(default_factory=list)  # inputs whose first dim is the batch
    kwargs: dict[str, torch.Tensor] = field(default_factory=dict)
    grad: bool = True


def _randn(g, *shape, scale, dtype):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _classes(n, c, dtype, scale, g, first="logits", extra=()):
    args = {first: _randn(g, n, c, scale=scale, dtype=dtype), "target": torch.randint(0, c, (n,), generator=g)}
    for name in extra:
        args[name] = _randn(g, n, c, scale=scale, dtype=dtype)
    return Case(args, [first, *extra], "target", c, [first, "target", *extra])


def _metric(n, c, dtype, scale, g):
    probs = torch.softmax(_randn(g, n, c, scale=scale, dtype=torch.float64), -1).to(dtype)
    return Case({"probs": probs, "target": torch.randint(0, c, (n,), generator=g)}, ["probs"], "target", c,
                ["probs", "target"], grad=False)


def _grouped_metric(n, c, dtype, scale, g):
    case = _metric(n, c, dtype, scale, g)
    case.kwargs["group_mask"] = torch.arange(c) < max(1, c // 2)  # both groups non-empty for every C >= 2
    return case


def _multilabel(n, c, dtype, scale, g):
    target = torch.randint(0, 2, (n, c), generator=g)
    target[0, 0], target[-1, -1] = 1, 0  # every label column needs both kinds for the AUC losses
    return Case({"logits": _randn(g, n, c, scale=scale, dtype=dtype), "target": target}, ["logits"], "target", 2,
                ["logits", "target"])


def _binary(n, c, dtype, scale, g):
    return Case({"scores": _randn(g, n, scale=scale, dtype=dtype), "target": torch.randint(0, 2, (n,), generator=g)},
                ["scores"], "target", 2, ["scores", "target"])


def _reject(n, c, dtype, scale, g):
    return Case({"scores": _randn(g, n, scale=scale, dtype=dtype),
                 "predictor_logits": _randn(g, n, c, scale=scale, dtype=dtype),
                 "target": torch.randint(0, c, (n,), generator=g)},
                ["scores", "predictor_logits"], "target", c, ["scores", "predictor_logits", "target"])


def _projection(first, second):
    def build(n, c, dtype, scale, g):
        d = 4
        return Case({first: _randn(g, n, d, scale=scale, dtype=dtype), second: _randn(g, c, d, scale=1.0, dtype=dtype),
                     "target": torch.randint(0, c, (n,), generator=g)}, [first, second], "target", c, [first, "target"])
    return build


def _bags_of(n, g):
    b = max(1, n // 2)
    return b, torch.arange(n) % b  # every bag has a member


def _proportion_bags(n, c, dtype, scale, g):
    b, bags = _bags_of(n, g)
    props = torch.softmax(torch.randn(b, c, generator=g, dtype=torch.float64), -1).to(dtype)
    return Case({"logits": _randn(g, n, c, scale=scale, dtype=dtype), "bag_proportions": props, "bags": bags},
                ["logits"], "bags", b, ["logits", "bags"])


def _regression_bags(n, c, dtype, scale, g):
    b, bags = _bags_of(n, g)
    return Case({"pred": _randn(g, n, scale=scale, dtype=dtype), "bag_target": _randn(g, b, scale=1.0, dtype=dtype),
                 "bags": bags}, ["pred"], "bags", b, ["pred", "bags"])


def _features_distill(n, c, dtype, scale, g):
    d = 4
    return Case({"features": _randn(g, n, d, scale=scale, dtype=dtype), "target": torch.randint(0, c, (n,), generator=g),
                 "teacher_features": _randn(g, n, d, scale=scale, dtype=dtype)},
                ["features", "teacher_features"], "target", c, ["features", "target", "teacher_features"],
                kwargs={"class_means": _randn(g, c, d, scale=1.0, dtype=dtype)})


def _label_free(case: Case) -> Case:
    """Entries documented to ignore ``target`` (teacher soft labels only): no label corruption applies."""
    case.label = None
    return case


def _dual_head(n, c, dtype, scale, g):
    case = _classes(n, c, dtype, scale, g, extra=("teacher_logits",))
    case.kwargs["aux_logits"] = _randn(g, n, c, scale=scale, dtype=dtype)
    return case


def _logits_only(n, c, dtype, scale, g):
    return Case({"logits": _randn(g, n, c, scale=scale, dtype=dtype)}, ["logits"], None, 0, ["logits"])


def _elr(n, c, dtype, scale, g):
    targets = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64), -1).to(dtype) * 0.9
    return Case({"logits": _randn(g, n, c, scale=scale, dtype=dtype), "targets": targets}, ["logits"], None, 0,
                ["logits", "targets"])


def _features(n, c, dtype, scale, g):
    n += 3  # LDReg's neighbour estimates need N >= 3 (fewer is refused naming `features`)
    return Case({"features": _randn(g, n, 4, scale=scale, dtype=dtype)}, ["features"], None, 0, ["features"])


def _weight(n, c, dtype, scale, g):
    return Case({"weight": _randn(g, n, c, scale=scale, dtype=dtype)}, ["weight"], None, 0, [])


def _preference(n, c, dtype, scale, g):
    # Label corruptions hit `chosen`; `rejected` is drawn valid.
    return Case({"logits": _randn(g, n, c, scale=scale, dtype=dtype),
                 "chosen": torch.randint(0, c, (n,), generator=g), "rejected": torch.randint(0, c, (n,), generator=g),
                 "ref_logits": _randn(g, n, c, scale=scale, dtype=dtype)},
                ["logits", "ref_logits"], "chosen", c, ["logits", "chosen", "rejected", "ref_logits"])


OWN_BUILDERS: dict[str, Callable[..., Case]] = {
    "decoupled_softmax": _multilabel, "macro_auc_pairwise": _multilabel, "macro_auc_reweighted": _multilabel,
    "ensloss": _binary, "fixed_predictor_reject": _reject,
    "linear_ce": _projection("hidden", "weight"), "normalized_softmax": _projection("embeddings", "class_weights"),
    "npo": lambda *a: _classes(*a, extra=("ref_logits",)),
    "dpo": _preference, "rpo": _preference,
    "dual_head_kd": _dual_head,
    "meal_v2": lambda *a: _label_free(_classes(*a, extra=("teacher_logits",))),
    "random_teacher": lambda *a: _label_free(_classes(*a, extra=("teacher_logits",))),
    "dllp": _proportion_bags, "easyllp": _proportion_bags,
    "bag_level": _regression_bags, "instance_level": _regression_bags, "interpolating_bag": _regression_bags,
    "nd_loss": _features_distill,
    "confidence_penalty": _logits_only, "output_z_loss": _logits_only, "elr": _elr, "ldreg": _features,
    "weight_compander": _weight,
    "ausuc": _grouped_metric, "seen_unseen": _grouped_metric,
}
NOT_FUZZED = {
    "elle": "takes a model, its inputs and a loss function; fuzzed through its own tests' models",
    "ewc": "takes parameter lists and a Fisher estimate, not a batch",
    "l2_anchor": "takes parameter lists, not a batch",
    "multi_sample_dropout": "takes a head module and a loss function",
}


def _builder(kind, entry) -> Callable[..., Case] | None:
    if entry.name in OWN_BUILDERS:
        return OWN_BUILDERS[entry.name]
    if kind == "metric":
        return _metric
    positional = [p for p, v in inspect.signature(entry.obj).parameters.items()
                  if v.kind is not inspect.Parameter.KEYWORD_ONLY]
    if positional == ["logits", "target"]:
        return _classes
    if kind == "distill" and positional[:2] == ["logits", "target"] and len(positional) == 3:
        return lambda *a: _classes(*a, extra=(positional[2],))
    return None


ENTRIES = [(kind, e, _builder(kind, e)) for kind in ("loss", "distill", "metric", "regularizer")
           for e in REGISTRY.entries(kind) if e.name not in NOT_FUZZED]
IDS = [f"{kind}:{e.name}" for kind, e, _ in ENTRIES]


def test_every_entry_is_fuzzed_or_excused():
    missing = [i for i, (_, _, b) in zip(IDS, ENTRIES) if b is None]
    assert not missing, f"no fuzz builder for {missing}: add one to OWN_BUILDERS or a reason to NOT_FUZZED"


def _hyper_value(h, draw):
    """A value anywhere inside ``h``'s declared range (closed edges included)."""
    if h.type == "bool":
        return draw(st.booleans())
    if h.type == "choice":
        return draw(st.sampled_from(h.choices))
    if h.type not in ("float", "int"):
        return h.default
    if h.default is None and draw(st.booleans()):
        return None  # optional settings are fuzzed unset as well as set
    # Unbounded sides are fuzzed over a few decades around the default, not to the float limits.
    centre = float(h.default) if h.default is not None else (h.low if h.low is not None else 0.0)
    span = max(10.0, abs(centre) * 10)
    low = h.low if h.low is not None else centre - span
    high = h.high if h.high is not None else centre + span
    if h.type == "int":
        lo = math.ceil(low) + (1 if h.low_open and float(low).is_integer() else 0)
        hi = math.floor(high) - (1 if h.high_open and float(high).is_integer() else 0)
        return draw(st.integers(lo, min(hi, lo + 50)))
    return draw(st.floats(low, high, exclude_min=h.low_open, exclude_max=h.high_open,
                          allow_nan=False, allow_infinity=False))


def _call(entry, case: Case, hypers: dict, reduction: str):
    params = inspect.signature(entry.obj).parameters
    kwargs = dict(case.kwargs, **hypers)
    if "reduction" in params and "reduction" not in entry.hyper:
        kwargs["reduction"] = reduction
    return entry.obj(*case.args.values(), **kwargs)


def _assert_names_an_argument(entry, err: ValueError, among: set[str] | None = None) -> None:
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", str(err)))
    allowed = among if among is not None else set(inspect.signature(entry.obj).parameters) | {"weight"}
    assert named & allowed, f"{entry.name}: ValueError names none of {sorted(allowed)}: {err}"


def _finite_or_beyond_dtype(entry, grad, x, recompute) -> None:
    """Gradients are finite, except where the true gradient lies beyond a half dtype's range.

    The gradient of a float16 leaf is stored in float16, so a true value over 65504
    can only be inf; that is the dtype's limit, not the entry's. The float32 gradient
    of the same input tells which entries those are.
    """
    if bool(torch.isfinite(grad).all()):
        return
    assert x.dtype in (torch.float16, torch.bfloat16), f"{entry.name}: non-finite gradient"
    ref = recompute()
    assert bool(torch.isfinite(ref).all()), f"{entry.name}: non-finite float32 gradient"
    bad = ~torch.isfinite(grad) & ~(ref.abs() > torch.finfo(x.dtype).max)
    assert not bool(bad.any()), f"{entry.name}: non-finite gradient where float32 gives {ref[bad]}"


@st.composite
def _draws(draw, kind, entry, builder):
    n = draw(st.integers(1, 8))
    c = draw(st.integers(2, 7))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from((1e-3, 1.0, 30.0, 1e4)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    case = builder(n, c, dtype, scale, g)
    # Twin-only settings (a module's state, such as ELR's running-target momentum) are not function arguments.
    own = inspect.signature(entry.obj).parameters
    hypers = {name: _hyper_value(h, draw) for name, h in entry.hyper.items() if name in own}
    return case, hypers, draw(st.sampled_from(("none", "mean", "sum")))


@pytest.mark.parametrize(("kind", "entry", "builder"), ENTRIES, ids=IDS)
def test_valid_input_gives_finite_values_or_a_named_refusal(kind, entry, builder):
    if builder is None:
        pytest.skip("no builder (see test_every_entry_is_fuzzed_or_excused)")

    @FUZZ
    @given(drawn=_draws(kind, entry, builder))
    def check(drawn):
        case, hypers, reduction = drawn
        leaves = [n for n in case.floats] if case.grad else []
        for name in leaves:
            case.args[name] = case.args[name].clone().requires_grad_(True)
        try:
            out = _call(entry, case, hypers, reduction)
        except ValueError as err:
            _assert_names_an_argument(entry, err)
            return
        values = out if isinstance(out, tuple) else (out,)
        tensors = [v for v in values if isinstance(v, torch.Tensor) and v.dtype.is_floating_point]
        assert tensors or isinstance(out, float), f"{entry.name}: returned {type(out).__name__}"
        for v in tensors:
            assert bool(torch.isfinite(v).all()), f"{entry.name}: non-finite value {v} with {hypers}"
        if isinstance(out, float):
            assert math.isfinite(out), f"{entry.name}: non-finite value {out} with {hypers}"
        head = tensors[0] if tensors else None
        if head is None or not head.requires_grad:
            return
        grads = torch.autograd.grad(head.sum(), [case.args[n] for n in leaves], allow_unused=True)
        for name, grad in zip(leaves, grads):
            if grad is None:
                continue

            def recompute(name=name):
                wide = Case({k: (v.detach().float().requires_grad_(k == name) if k in case.floats else v)
                             for k, v in case.args.items()}, case.floats, kwargs=case.kwargs)
                res = _call(entry, wide, hypers, reduction)
                res = res[0] if isinstance(res, tuple) else res
                return torch.autograd.grad(res.sum(), wide.args[name])[0]

            _finite_or_beyond_dtype(entry, grad, case.args[name], recompute)

    check()


_CORRUPTIONS = ("empty", "nan", "inf", "-inf", "label", "shape")


@pytest.mark.parametrize(("kind", "entry", "builder"), ENTRIES, ids=IDS)
def test_invalid_input_is_refused_by_name(kind, entry, builder):
    if builder is None:
        pytest.skip("no builder (see test_every_entry_is_fuzzed_or_excused)")

    @FUZZ
    @given(drawn=_draws(kind, entry, builder), which=st.sampled_from(_CORRUPTIONS), pick=st.integers(0, 99))
    def check(drawn, which, pick):
        case, hypers, reduction = drawn
        args = case.args
        if which == "empty" and case.batch:
            for name in case.batch:
                args[name] = args[name][:0]
        elif which in ("nan", "inf", "-inf"):
            name = case.floats[pick % len(case.floats)]
            x = args[name].clone()
            x.view(-1)[pick % x.numel()] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[which]
            args[name] = x
        elif which == "label" and case.label is not None:
            y = args[case.label].clone()
            y.view(-1)[pick % y.numel()] = case.label_high + pick % 3
            args[case.label] = y
        elif which == "shape" and case.label is not None:
            args[case.label] = args[case.label][:-1] if pick % 2 else args[case.label].unsqueeze(-1)
        else:
            return  # the corruption does not apply to this entry's inputs
        with pytest.raises(ValueError) as info:
            _call(entry, case, hypers, reduction)
        _assert_names_an_argument(entry, info.value)

    check()


def _beyond(h, draw):
    """A value outside ``h``'s declared numeric range, or None when it has none."""
    sides = []
    if h.low is not None:
        sides.append(h.low if h.low_open else h.low - draw(st.floats(1e-6, 1e6)))
    if h.high is not None:
        sides.append(h.high if h.high_open else h.high + draw(st.floats(1e-6, 1e6)))
    return draw(st.sampled_from(sides)) if sides else None


@pytest.mark.parametrize(("kind", "entry", "builder"), ENTRIES, ids=IDS)
def test_hyper_beyond_its_bounds_is_refused_by_name(kind, entry, builder):
    own = inspect.signature(entry.obj).parameters
    bounded = [n for n, h in entry.hyper.items()
               if n in own and h.type in ("float", "int") and (h.low, h.high) != (None, None)]
    default_reduction = own["reduction"].default if "reduction" in own else "mean"
    if builder is None or not bounded:
        pytest.skip("no bounded numeric hyper-parameter")

    @FUZZ
    @given(drawn=_draws(kind, entry, builder), data=st.data())
    def check(drawn, data):
        case, hypers, reduction = drawn
        name = data.draw(st.sampled_from(bounded))
        h = entry.hyper[name]
        value = _beyond(h, data.draw)
        if h.type == "int":
            value = math.floor(value) if h.low is not None and value < h.low else math.ceil(value)
        with pytest.raises(ValueError) as info:
            _call(entry, case, {name: value}, default_reduction)  # the others at their defaults
        _assert_names_an_argument(entry, info.value, {name})
        with pytest.raises(ValueError, match=re.escape(name)):
            entry.resolve({name: value})

    check()
