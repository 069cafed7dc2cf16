"""Per-level diagnostic series (acc@0.875, acc@4bit) read as curves over their levels."""

from __future__ import annotations

import pytest

from losslab.engine.curves import level_family, profiles
from losslab.engine.plan import RunSpec


@pytest.mark.parametrize("name, expected", [
    ("prune_lamp.acc@0.875", ("prune_lamp.acc@", 0.875)),
    ("quantized_accuracy.acc@4bit", ("quantized_accuracy.acc@bit", 4.0)),
    ("x.loss@1e-3", ("x.loss@", 1e-3)),
    ("weight_norm.total", None),
    ("x.acc@", None),
    ("x.acc@bit", None),
])
def test_level_family(name, expected):
    assert level_family(name) == expected


def _run(run_id: str, objective: str, seed: int) -> RunSpec:
    return RunSpec(run_id=run_id, dataset="d", condition="c", objective=objective, seed=seed, config={})


def test_profiles_take_each_runs_last_epoch_and_the_levels_every_seed_has():
    plan = [_run("a0", "ce", 0), _run("a1", "ce", 1), _run("b0", "ls", 0)]
    data = {
        "a0": {"p.acc@0.5": [(0, 0.1), (9, 0.9)], "p.acc@0.75": [(9, 0.8)], "p.acc@0.875": [(9, 0.5)],
               "p.dense": [(9, 0.95)], "other.acc@0.5": [(9, 0.0)]},
        "a1": {"p.acc@0.5": [(9, 0.7)], "p.acc@0.75": [(9, 0.6)], "p.acc@0.875": [(9, 0.3)],
               "p.acc@0.9375": [(9, 0.2)]},  # a level only one seed has is left out
        "b0": {"p.acc@0.5": [(9, 0.9)], "p.acc@0.75": [(9, 0.4)]},  # two levels: too few for a curve
    }
    out = profiles(plan, data, ["p"])
    assert set(out) == {"p.acc@"}  # "other" was not asked for; p.dense is not per-level
    ce = out["p.acc@"][("d", "c")]["ce"]
    assert ce.epochs == [0.5, 0.75, 0.875] and ce.n == 2
    assert ce.mean == pytest.approx([0.8, 0.7, 0.4]) and ce.low == [0.7, 0.6, 0.3] and ce.high == [0.9, 0.8, 0.5]
    assert "ls" not in out["p.acc@"][("d", "c")]
