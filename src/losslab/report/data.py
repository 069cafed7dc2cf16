"""What a report is built from: the spec, its plan and the store, read lazily and once.

:class:`ReportData` is the one argument of every section function
(:mod:`losslab.report.sections`). The ranked rows come from
:func:`losslab.engine.stats.summarize` with the same arguments as the
terminal ``losslab report``, so the page and the terminal cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from losslab.engine.curves import Series, ranking_values, series
from losslab.engine.plan import RunSpec, make_plan, reference_label
from losslab.engine.spec import RANKING_METRICS, Spec, load_spec
from losslab.engine.stats import Row, summarize
from losslab.engine.store import Store, StoreMissing, runs as runs_table
from losslab.engine.store_backend import masked

Group = tuple[str, str]


@dataclass
class ReportData:
    """One spec's finished runs in one store, with the derived views the sections share."""

    spec: Spec
    spec_path: Path
    plan: list[RunSpec]
    store: Store
    spec_text: str
    store_url: str
    finals: dict[str, dict[str, float | None]]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    metric_override: str | None = None  # `losslab report --metric`: a final metric or a stored series
    direction: str | None = None

    @classmethod
    def load(cls, spec_path: Path, store_url: str, *, metric: str | None = None,
             direction: str | None = None) -> "ReportData":
        """Read ``spec_path`` and the store; ValueError when the store holds none of its finished runs, or
        ``metric`` is neither a final metric nor a stored series (see :func:`losslab.engine.curves.ranking_values`)."""
        spec = load_spec(spec_path)
        plan = make_plan(spec)
        try:
            store = Store(store_url, create=False)
        except StoreMissing:
            raise ValueError(f"no store at {masked(store_url)}; run the spec first (nothing was written)") from None
        finals = store.final_metrics(r.run_id for r in plan)
        if not finals:
            raise ValueError(f"spec {spec.name!r} has no finished runs in store {masked(store_url)}; "
                             "run it first (nothing was written)")
        data = cls(spec, Path(spec_path), plan, store, Path(spec_path).read_text(), store_url, finals,
                   metric_override=metric, direction=direction)
        data.scored  # noqa: B018 - validates `metric` now, before any section is built
        return data

    # -- the leaderboard ----------------------------------------------------------
    @functools.cached_property
    def reference(self) -> str:
        return reference_label(self.spec, self.plan)

    @property
    def metric(self) -> str:
        """What the leaderboard ranks by: ``--metric``, else the spec's metric."""
        return self.metric_override or self.spec.metric

    @functools.cached_property
    def _ranking(self) -> tuple[dict[str, dict[str, float | None]], bool]:
        data = self.series if self.metric not in RANKING_METRICS else {}
        return ranking_values(self.metric, self.direction, self.finals, self.plan, data)

    @property
    def scored(self) -> dict[str, dict[str, float | None]]:
        """Per-run values holding :attr:`metric` (the final metrics, plus a series' last value)."""
        return self._ranking[0]

    @property
    def higher_is_better(self) -> bool:
        return self._ranking[1]

    @functools.cached_property
    def rows(self) -> list[Row]:
        return summarize(self.plan, self.scored, metric=self.metric, higher_is_better=self.higher_is_better,
                         reference=self.reference)

    @functools.cached_property
    def groups(self) -> list[Group]:
        """The (dataset, condition) cells with at least one finished run, in plan order."""
        done = {(r.dataset, r.condition) for r in self.plan if r.run_id in self.finals}
        return [g for g in dict.fromkeys((r.dataset, r.condition) for r in self.plan) if g in done]

    def cell_title(self, group: Group) -> str:
        """``dataset · condition``, or just the condition when the spec has one dataset (named in the header)."""
        return group[1] if len({g[0] for g in self.groups}) == 1 else f"{group[0]} · {group[1]}"

    @functools.cached_property
    def objectives(self) -> list[str]:
        return list(dict.fromkeys(r.objective for r in self.plan))

    def per_seed(self, metric: str | None = None) -> dict[Group, dict[str, dict[int, float]]]:
        """``group -> objective -> seed -> final value`` of ``metric`` (the ranked one by default), finite only."""
        metric = metric or self.metric
        out: dict[Group, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for r in self.plan:
            v = self.scored.get(r.run_id, {}).get(metric)
            if v is not None and math.isfinite(v):
                out[(r.dataset, r.condition)][r.objective][r.seed] = v
        return out

    # -- per-epoch series -----------------------------------------------------------
    @functools.cached_property
    def series(self) -> Series:
        return series(self.plan, self.store)

    @functools.cached_property
    def diagnostic_labels(self) -> list[str]:
        return [d.label or d.name for d in self.spec.diagnostics]

    # -- runs and their environment ---------------------------------------------------
    @functools.cached_property
    def runs(self) -> dict[str, dict[str, Any]]:
        """``run_id -> {status, environment, duration_s, finished_at, error}`` of the plan's stored runs."""
        ids = [r.run_id for r in self.plan]
        t = runs_table
        out: dict[str, dict[str, Any]] = {}
        with self.store.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = sa.select(t.c.run_id, t.c.status, t.c.environment, t.c.duration_s, t.c.finished_at,
                              t.c.error).where(t.c.run_id.in_(ids[i: i + 500]))
                for rid, status, env, duration, finished, error in conn.execute(q):
                    out[rid] = {"status": status, "environment": json.loads(env), "duration_s": duration,
                                "finished_at": finished, "error": error}
        return out

    @property
    def spec_sha256(self) -> str:
        return hashlib.sha256(self.spec_text.encode()).hexdigest()

    @property
    def safe_store_url(self) -> str:
        return masked(self.store_url)
