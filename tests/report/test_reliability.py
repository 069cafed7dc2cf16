"""Reliability bins are ECE's own bins; the checkpoints reload into the models that were scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losslab.engine.plan import make_plan
from losslab.engine.spec import load_spec
from losslab.engine.store import Store
from losslab.metrics import expected_calibration_error
from losslab.report.reliability import collect_reliability, reliability_bins


def _probs(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, c, generator=g, dtype=torch.float64)
    return torch.softmax(logits, -1), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_bins_give_exactly_the_metric(n_bins):
    probs, target = _probs(500, 5, 0)
    bins = reliability_bins(probs, target, n_bins=n_bins)
    assert bins.ece == float(expected_calibration_error(probs, target, n_bins=n_bins))
    assert bins.count.sum() == 500 and len(bins.edges) == n_bins + 1
    filled = bins.count > 0
    assert np.all((bins.confidence[filled] >= bins.edges[:-1][filled]) & (bins.confidence[filled] <= 1))
    assert np.isnan(bins.accuracy[~filled]).all()


def test_pooled_bins_are_the_bins_of_the_pooled_predictions():
    (p1, y1), (p2, y2) = _probs(300, 4, 1), _probs(200, 4, 2)
    pooled = reliability_bins(p1, y1) + reliability_bins(p2, y2)
    assert pooled.ece == pytest.approx(float(expected_calibration_error(torch.cat([p1, p2]), torch.cat([y1, y2]))),
                                       abs=1e-15)


def test_bad_shapes_are_refused():
    probs, target = _probs(10, 3, 0)
    with pytest.raises(ValueError, match="`probs`"):
        reliability_bins(probs[0], target)
    with pytest.raises(ValueError, match="`n_bins`"):
        reliability_bins(probs, target, n_bins=0)


def test_reloaded_checkpoints_reproduce_the_stored_test_ece(report_store):
    spec_path, url = report_store
    plan = make_plan(load_spec(spec_path))
    store = Store(url, create=False)
    finals = store.final_metrics(r.run_id for r in plan)
    cells, skipped = collect_reliability(plan, store, set(finals))
    assert not skipped
    run_ece = {rid: e for objs in cells.values() for rel in objs.values() for rid, e in rel.run_ece.items()}
    assert set(run_ece) == set(finals)
    for rid, ece in run_ece.items():  # the same weights on the same rebuilt test split
        assert ece == pytest.approx(finals[rid]["test_ece"], abs=1e-9)
