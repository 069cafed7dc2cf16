"""Comparisons between every pair of objectives, and across all cells at once.

Two views, both on the paired design of :mod:`losslab.engine.stats` (the same
seed gives every objective the same data and initialisation):

- :func:`pairwise` — within one (dataset, condition): for each ordered pair
  ``(a, b)`` the mean paired difference :math:`\\bar\\Delta = \\tfrac1n\\sum_s (x_{a,s} - x_{b,s})`,
  the share of seeds ``a`` wins, and the paired t-test p-value, Holm-adjusted
  over the :math:`m = k(k-1)/2` pairs of the cell.
- :func:`critical_difference` — across every (dataset, condition, seed) block
  where all objectives finished: average ranks, Friedman's test, and the
  Nemenyi critical difference :math:`CD = q_\\alpha \\sqrt{k(k+1)/(6N)}` with
  :math:`q_\\alpha` the studentized range quantile over :math:`\\sqrt2`
  (Demšar, *Statistical Comparisons of Classifiers over Multiple Data Sets*, JMLR 2006).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from losslab.engine.stats import CONFIDENCE

PerSeed = dict[str, dict[int, float]]  # objective -> seed -> value


@dataclass(frozen=True)
class Pairwise:
    """``k × k`` matrices over ``objectives`` (row vs column); the diagonal is NaN.

    ``delta[i, j]`` is oriented so that positive means row ``i`` is better.
    """

    objectives: list[str]
    delta: np.ndarray  # mean paired difference, sign-oriented (better > 0)
    wins: np.ndarray  # seeds on which row beats column (strictly)
    n: np.ndarray  # paired seeds
    p_value: np.ndarray  # paired t-test
    p_holm: np.ndarray  # Holm-adjusted over the cell's pairs


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: :math:`\\tilde p_{(i)} = \\max_{j \\le i} \\min(1, (m - j + 1) p_{(j)})`.

    NaN entries (untestable pairs) stay NaN and do not count towards ``m``.
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def pairwise(values: PerSeed, objectives: list[str], *, higher_is_better: bool) -> Pairwise:
    """Paired comparisons of every ordered pair of ``objectives`` on their common seeds."""
    if not objectives or any(o not in values for o in objectives):
        raise ValueError(f"Expected `objectives` to be a non-empty subset of {sorted(values)}, but got {objectives}.")
    k, sign = len(objectives), 1.0 if higher_is_better else -1.0
    delta, wins, p = (np.full((k, k), math.nan) for _ in range(3))
    n = np.zeros((k, k), dtype=int)
    for i, a in enumerate(objectives):
        for j, b in enumerate(objectives):
            seeds = sorted(set(values[a]) & set(values[b]))
            if i == j or not seeds:
                continue
            d = sign * (np.array([values[a][s] for s in seeds]) - np.array([values[b][s] for s in seeds]))
            delta[i, j], wins[i, j], n[i, j] = d.mean(), (d > 0).sum(), len(seeds)
            # A constant difference has no variance to test (and float noise would fake one).
            if len(seeds) >= 2 and d.std() > 1e-12 * max(1.0, abs(d.mean())):
                p[i, j] = stats.ttest_rel([values[a][s] for s in seeds], [values[b][s] for s in seeds]).pvalue
    upper = np.triu_indices(k, 1)
    adjusted = np.full((k, k), math.nan)
    adjusted[upper] = holm(p[upper])
    adjusted = np.where(np.isnan(adjusted), adjusted.T, adjusted)  # symmetric: one test per unordered pair
    return Pairwise(list(objectives), delta, wins, n, p, adjusted)


@dataclass(frozen=True)
class CriticalDifference:
    """Average ranks (1 = best) over ``blocks`` complete blocks, Friedman's p and the Nemenyi CD."""

    objectives: list[str]
    avg_rank: np.ndarray
    blocks: int
    friedman_p: float
    cd: float
    cliques: list[tuple[int, int]]  # index ranges [i, j] (in avg_rank order) not significantly different


def nemenyi_cd(k: int, blocks: int, alpha: float = 1.0 - CONFIDENCE) -> float:
    """The Nemenyi critical difference of average ranks for ``k`` objectives over ``blocks`` blocks."""
    if k < 2 or blocks < 1:
        raise ValueError(f"Expected `k` >= 2 and `blocks` >= 1, but got k={k}, blocks={blocks}.")
    q = stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * blocks)))


def critical_difference(blocks: list[dict[str, float]], objectives: list[str], *,
                        higher_is_better: bool) -> CriticalDifference | None:
    """Friedman + Nemenyi over the ``blocks`` (objective -> value) that hold every one of ``objectives``.

    Returns None with fewer than 3 objectives or 2 complete blocks (Friedman's test needs both).
    """
    names = list(dict.fromkeys(objectives))
    complete = [b for b in blocks if all(o in b for o in names)]
    if len(names) < 3 or len(complete) < 2:
        return None
    x = np.array([[b[o] for o in names] for b in complete])
    ranks = stats.rankdata(-x if higher_is_better else x, axis=1)  # ties share their average rank
    avg = ranks.mean(0)
    order = np.argsort(avg, kind="stable")
    friedman = stats.friedmanchisquare(*x.T).pvalue if np.ptp(ranks, axis=1).any() else 1.0
    cd = nemenyi_cd(len(names), len(complete))
    return CriticalDifference([names[i] for i in order], avg[order], len(complete), float(friedman), cd,
                              _cliques(avg[order], cd))


def _cliques(sorted_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``[i, j]`` of sorted average ranks spanning less than ``cd`` (the diagram's bars)."""
    out: list[tuple[int, int]] = []
    for i in range(len(sorted_ranks)):
        j = i
        while j + 1 < len(sorted_ranks) and sorted_ranks[j + 1] - sorted_ranks[i] < cd:
            j += 1
        if j > i and not (out and out[-1][1] >= j):
            out.append((i, j))
    return out
