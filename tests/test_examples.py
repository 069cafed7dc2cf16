"""Every shipped example is a valid spec that expands into runs (the GPU and download ones included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from losslab.engine.plan import make_plan
from losslab.engine.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_expands_into_runs(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # example data paths are relative to the repository root
    plan = make_plan(load_spec(path))
    assert plan and len({r.run_id for r in plan}) == len(plan)


def test_examples_include_the_documented_ones():
    assert {"noisy-labels.yaml", "my-csv.yaml", "cifar10n.yaml", "grokking.yaml"} <= {p.name for p in EXAMPLES}
