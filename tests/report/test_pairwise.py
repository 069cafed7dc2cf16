"""Pairwise paired tests, Holm's adjustment and the Friedman/Nemenyi critical difference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from losslab.report.pairwise import critical_difference, holm, nemenyi_cd, pairwise


def test_holm_matches_the_worked_example():
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .02, .03, .06, .06
    got = holm(np.array([0.01, 0.04, 0.03, 0.005, math.nan]))
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(got[4])


def test_holm_is_bounded_and_order_preserving():
    p = np.random.default_rng(0).uniform(0, 0.2, size=30)
    adj = holm(p)
    assert np.all(adj >= p) and np.all(adj <= 1)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert holm(np.array([0.3]))[0] == 0.3  # one test: nothing to correct


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (8, 3.031),
                                  (10, 3.164)])
def test_nemenyi_cd_uses_demsar_critical_values(k, q):
    # Demšar (JMLR 2006), Table 5(a): q_0.05 for the two-tailed Nemenyi test
    assert nemenyi_cd(k, 12) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * 12)), abs=2e-3)
    with pytest.raises(ValueError, match="`k`"):
        nemenyi_cd(1, 5)


def test_pairwise_is_paired_oriented_and_antisymmetric():
    values = {"a": {0: 0.8, 1: 0.7, 2: 0.9}, "b": {0: 0.7, 1: 0.72, 2: 0.8}, "c": {0: 0.5, 2: 0.6}}
    pw = pairwise(values, ["a", "b", "c"], higher_is_better=True)
    np.testing.assert_allclose(pw.delta, -pw.delta.T)
    assert pw.delta[0, 1] == pytest.approx(np.mean([0.1, -0.02, 0.1]))
    assert pw.wins[0, 1] == 2 and pw.wins[1, 0] == 1 and pw.n[0, 2] == 2  # c lacks seed 1
    assert pw.p_value[0, 1] == pytest.approx(stats.ttest_rel([0.8, 0.7, 0.9], [0.7, 0.72, 0.8]).pvalue)
    raw = pw.p_value[np.triu_indices(3, 1)]
    np.testing.assert_allclose(pw.p_holm[np.triu_indices(3, 1)], holm(raw))
    np.testing.assert_allclose(pw.p_holm, pw.p_holm.T)
    lower = pairwise(values, ["a", "b", "c"], higher_is_better=False)  # an error metric: smaller wins
    np.testing.assert_allclose(lower.delta, -pw.delta)
    with pytest.raises(ValueError, match="`objectives`"):
        pairwise(values, ["a", "z"], higher_is_better=True)


def test_critical_difference_ranks_and_friedman():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 4)) + np.array([0.0, 0.4, 0.8, 3.0])  # d clearly best
    names = ["a", "b", "c", "d"]
    blocks = [dict(zip(names, row)) for row in x] + [{"a": 1.0, "b": 2.0}]  # the incomplete block is dropped
    cd = critical_difference(blocks, names, higher_is_better=True)
    expected = stats.rankdata(-x, axis=1).mean(0)
    assert cd.blocks == 9 and cd.objectives[0] == "d"
    assert dict(zip(cd.objectives, cd.avg_rank)) == pytest.approx(dict(zip(names, expected)))
    assert cd.friedman_p == pytest.approx(stats.friedmanchisquare(*x.T).pvalue)
    assert cd.cd == pytest.approx(nemenyi_cd(4, 9))
    for i, j in cd.cliques:  # every bar spans less than CD, and none is inside another
        assert cd.avg_rank[j] - cd.avg_rank[i] < cd.cd
    assert len({j for _, j in cd.cliques}) == len(cd.cliques)
    assert critical_difference(blocks, ["a", "b"], higher_is_better=True) is None  # Friedman needs 3
