"""Hypothesis fuzzing of every registered data condition (issue 8).

For random small splits (N down to 2, C down to 2, labels possibly missing a
class) and hyper-parameters anywhere in their declared ranges, a condition
returns a well-formed split (test split untouched, or for the shift family the
train split untouched; labels in range, its record appended) or refuses with a ValueError naming an argument; a hyper-parameter
beyond its bounds is always refused by name, before any work is done (the two
conditions that train models are checked for that property only).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import losslab.data  # noqa: F401  (registers the conditions)
from losslab.core.registry import REGISTRY
from losslab.data.base import SplitData

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TRAINS_MODELS = {"late_stopping", "prune_by_score"}
ENTRIES = REGISTRY.entries("condition")
CHEAP = [e for e in ENTRIES if e.name not in TRAINS_MODELS]


@st.composite
def _splits(draw):
    n, c = draw(st.integers(2, 40)), draw(st.sampled_from((2, 3, 5, 10)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    return SplitData("fuzz", torch.randn(n, 3, generator=g), y, torch.randn(5, 3, generator=g),
                     torch.randint(0, c, (5,), generator=g), num_classes=c), seed


def _inside(h, draw):
    if h.type == "bool":
        return draw(st.booleans())
    if h.type == "choice":
        return draw(st.sampled_from(h.choices))
    if h.type == "int":
        low = int(h.low) + (1 if h.low_open else 0) if h.low is not None else 0
        high = int(h.high) - (1 if h.high_open else 0) if h.high is not None else low + 20
        return draw(st.integers(low, min(high, low + 20)))
    low = h.low if h.low is not None else -10.0
    high = h.high if h.high is not None else low + 100.0
    return draw(st.floats(low, high, exclude_min=h.low_open, exclude_max=h.high_open, allow_nan=False))


def _names_an_argument(err: ValueError, entry) -> bool:
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", str(err)))
    return bool(named & ({"data", "generator", "data.num_classes"} | set(entry.hyper)))


@pytest.mark.parametrize("entry", CHEAP, ids=[e.name for e in CHEAP])
def test_valid_hypers_give_a_well_formed_split_or_a_named_refusal(entry):
    @FUZZ
    @given(split=_splits(), data=st.data())
    def check(split, data):
        base, seed = split
        hyper = {k: _inside(h, data.draw) for k, h in entry.hyper.items()}
        try:
            out = entry.obj(base, generator=torch.Generator().manual_seed(seed), **hyper)
        except ValueError as err:
            assert _names_an_argument(err, entry), f"{entry.name}: {err}"
            return
        assert isinstance(out, SplitData) and len(out.records) == len(base.records) + 1
        if entry.family == "shift":  # shift conditions touch only the test split
            assert torch.equal(out.x_train, base.x_train) and torch.equal(out.y_train, base.y_train)
            assert out.x_test.shape[1:] == base.x_test.shape[1:] and len(out.x_test) == len(out.y_test) >= 1
            assert int(out.y_test.min()) >= 0 and int(out.y_test.max()) < base.num_classes
            return
        assert torch.equal(out.x_test, base.x_test) and torch.equal(out.y_test, base.y_test)
        assert 1 <= len(out.y_train) <= len(base.y_train) and len(out.x_train) == len(out.y_train)
        assert int(out.y_train.min()) >= 0 and int(out.y_train.max()) < base.num_classes
        assert len(out.y_train_clean) == len(out.y_train)

    check()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_hypers_beyond_their_bounds_are_refused_by_name(entry):
    bounded = [k for k, h in entry.hyper.items() if h.type in ("float", "int") and (h.low, h.high) != (None, None)]
    if not bounded:
        pytest.skip("no bounded numeric hyper-parameter")

    @FUZZ
    @given(split=_splits(), data=st.data())
    def check(split, data):
        base, seed = split
        name = data.draw(st.sampled_from(bounded))
        h = entry.hyper[name]
        sides = ([h.low if h.low_open else h.low - data.draw(st.floats(1e-6, 1e3))] if h.low is not None else []) + \
                ([h.high if h.high_open else h.high + data.draw(st.floats(1e-6, 1e3))] if h.high is not None else [])
        value = data.draw(st.sampled_from(sides))
        if h.type == "int":
            value = math.floor(value) if h.low is not None and value < h.low else math.ceil(value)
        with pytest.raises(ValueError, match=re.escape(f"`{name}`")):
            entry.obj(base, generator=torch.Generator().manual_seed(seed), **{name: value})

    check()
