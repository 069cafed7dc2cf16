"""Shift conditions through the engine: paired test sets, the vectorized executor, and a real accuracy drop."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from threadpoolctl import threadpool_limits

from losslab.engine.executor import execute
from losslab.engine.packing import plan_packs
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.store import Store
from losslab.engine.train import build_data
from specs import TINY


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _spec(conditions: list, **extra) -> dict:
    spec = copy.deepcopy(TINY)
    spec["conditions"] = conditions
    spec.update(extra)
    return spec


def test_every_objective_of_a_seed_sees_the_same_shifted_test_set():
    spec = _spec([{"name": "covariate_shift", "sweep": {"severity": [0, 3, 5]}},
                  {"name": "label_shift", "params": {"kind": "dirichlet", "alpha": 0.5}}])
    plan = make_plan(parse_spec(spec))
    assert len(plan) == 4 * 2 * 2  # 4 condition settings x 2 objectives x 2 seeds
    groups: dict = {}
    for run in plan:
        groups.setdefault((run.condition, run.seed), []).append(build_data(run.config))
    tests = {}
    for key, datas in groups.items():
        assert len(datas) == 2
        assert all(torch.equal(d.x_test, datas[0].x_test) and torch.equal(d.y_test, datas[0].y_test) for d in datas)
        tests[key] = datas[0]
    severities = sorted({c for c, _ in tests if "covariate" in c})
    clean = build_data({**plan[0].config, "conditions": []})
    for seed in (0, 1):
        assert torch.equal(tests[(severities[0], seed)].x_test, clean.x_test)  # severity 0 is the clean test set
        assert torch.equal(tests[(severities[0], seed)].x_train, tests[(severities[-1], seed)].x_train)
    assert not torch.equal(tests[(severities[-1], 0)].x_test, tests[(severities[-1], 1)].x_test)  # seeds differ


def test_a_packed_grid_with_label_shift_matches_the_sequential_executor(tmp_path):
    spec = _spec([{"name": "label_shift", "params": {"kind": "dirichlet", "alpha": 0.5}}], seeds=3)
    spec["train"]["epochs"] = 2
    plan = make_plan(parse_spec(spec))
    sizes = {r.seed: len(build_data(r.config).y_test) for r in plan}
    assert len(set(sizes.values())) > 1  # the shifted test split differs in size per seed
    packing = plan_packs(plan)
    # The pack key includes the test size: objectives of one seed pack, seeds with other sizes do not mix.
    for pack in packing.packs:
        assert len({sizes[m.run.seed] for m in pack.members}) == 1
    assert sum(len(p.members) for p in packing.packs) + len(packing.alone) == len(plan)
    assert packing.packs
    seq, vec = Store(f"sqlite:///{tmp_path}/seq.db"), Store(f"sqlite:///{tmp_path}/vec.db")
    assert execute(plan, seq).done == len(plan)
    assert execute(plan, vec, packs=packing.packs).done == len(plan)
    for run in plan:
        a, b = seq.run(run.run_id), vec.run(run.run_id)
        assert a["records"] == b["records"]
        assert a["records"][-1]["summary"]["num_kept"] == sizes[run.seed]
        bad = {k: (a["final"][k], b["final"][k]) for k in a["final"]
               if not (a["final"][k] is None and b["final"][k] is None)
               and not math.isclose(a["final"][k], b["final"][k], rel_tol=1e-6, abs_tol=1e-9)}
        assert not bad, (run.run_id, bad)


def test_covariate_shift_severity_five_lowers_test_accuracy_for_every_pair(tmp_path):
    """A real measurement: the same model (seed, objective) scores lower on the corrupted test set."""
    spec = _spec([{"name": "covariate_shift", "sweep": {"severity": [0, 5]}}])
    spec["train"]["epochs"] = 10
    plan = make_plan(parse_spec(spec))
    store = Store(f"sqlite:///{tmp_path}/s.db")
    assert execute(plan, store).done == len(plan) == 8
    acc = {}
    for run in plan:
        severity = run.config["conditions"][0]["params"]["severity"]
        acc[(run.objective, run.seed, severity)] = store.run(run.run_id)["final"]["test_accuracy"]
    pairs = {(o, s) for o, s, _ in acc}
    assert len(pairs) == 4
    for o, s in pairs:
        # Same training data and init: only the test inputs differ between the two runs.
        assert acc[(o, s, 5)] < acc[(o, s, 0)], (o, s, acc)
