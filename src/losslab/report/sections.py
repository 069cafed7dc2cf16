"""The report's sections: each a function ``(ReportData) -> Section | None``.

A section that has nothing to show (no diagnostics were recorded, fewer than two
objectives to compare) returns None and is left out of the page and its
contents list, so the page never shows an empty heading. A new section (the
scaling-law fits, say) is one more such function, passed to
:func:`losslab.report.build_report` through ``extra``; it is placed before the
environment, which always closes the page.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from losslab.engine.curves import Curve, curves, last_values, level_family, profiles
from losslab.engine.stats import Row
from losslab.report import figures
from losslab.report.data import ReportData
from losslab.report.markup import esc, figure, interval, note, num, swatch, table
from losslab.report.pairwise import CriticalDifference, critical_difference, pairwise
from losslab.report.reliability import N_BINS, collect_reliability

# Per-epoch series drawn as training curves, when stored (train.py records them at every eval epoch).
CURVE_METRICS = ("train_loss", "test_accuracy", "test_nll", "test_ece", "noisy_memorized")
LOG_X_EPOCHS = 1000  # grokking-length runs: a symmetric-log epoch axis shows early and late dynamics


@dataclass(frozen=True)
class Section:
    """One titled part of the page; ``body`` is ready HTML, ``lead`` a one-line summary under the title."""

    id: str
    title: str
    body: str
    lead: str = ""


SectionFn = Callable[[ReportData], "Section | None"]


# ----------------------------------------------------------------------------- leaderboard
def leaderboard(data: ReportData) -> Section:
    """The ranked table of the terminal report per (dataset, condition), and its intervals as a figure."""
    metric, ref = data.metric, data.reference
    colors = figures.palette(data.objectives)
    per_seed = data.per_seed()
    by_group: dict[tuple[str, str], list[Row]] = {}
    for r in data.rows:
        by_group.setdefault((r.dataset, r.condition), []).append(r)
    img = figures.leaderboard_figure([(data.cell_title(g), rows, per_seed.get(g, {})) for g, rows in by_group.items()],
                                     metric, colors, ref)
    parts = [figure(img, f"Mean (circle) and 95% Student-t interval (bar) of <b>{esc(metric)}</b> over seeds; "
                         f"small dots are the individual seeds; dashed line: the reference <b>{esc(ref)}</b>.")]
    marks = {(r.dataset, r.condition, r.objective): _mark(r, data.higher_is_better) for r in data.rows}
    parts.insert(0, _glance(by_group, marks, ref, data.cell_title))
    head = ("#", "objective", "mean", "95% CI", "Δ", "Δ 95% CI", "p", "ECE", "mem", "n")
    for group, rows in by_group.items():
        trs = []
        for r in rows:
            d, mark = r.delta, marks[(r.dataset, r.condition, r.objective)]
            trs.append(
                f'<tr class="{"best" if r.rank == 1 else ""}{" ref" if r.objective == ref else ""}" '
                f'data-objective="{esc(r.objective)}">'
                f'<td class="rank">{r.rank}</td><td class="obj">{swatch(colors[r.objective])}{esc(r.objective)}</td>'
                f'{num(r.score.mean, cls="mean")}{interval(r.score.low, r.score.high)}'
                f'{num(d.mean if d else None, cls="delta " + mark)}'
                f'{interval(d.low, d.high, cls="delta-ci " + mark) if d else "<td></td>"}'
                f'{num(r.p_value, cls="p")}{num(r.extras.get("test_ece"), cls="ece")}'
                f'{num(r.extras.get("noisy_memorized"), 2, cls="mem")}<td class="n">{r.score.n}</td></tr>')
        parts.append(f'<h3>{esc(data.cell_title(group))}</h3>' + table(head, trs, cls="leaderboard"))
    lead = (f"{esc(metric)} ({'higher' if data.higher_is_better else 'lower'} is better), mean and 95% CI over n "
            f"seeds; Δ is the paired per-seed difference to <b>{esc(ref)}</b> (p: paired t-test); ECE: test ECE; "
            f"mem: share of corrupted train labels the model reproduces. Green/red Δ: its 95% CI excludes 0.")
    return Section("leaderboard", "Leaderboard", "".join(parts), lead)


def _mark(row: Row, higher_is_better: bool) -> str:
    """``sig-better`` / ``sig-worse`` when the paired difference's 95% CI excludes 0, else empty."""
    d = row.delta
    if d is None or math.isnan(d.low):
        return ""
    lo, hi = (d.low, d.high) if higher_is_better else (-d.high, -d.low)
    return "sig-better" if lo > 0 else "sig-worse" if hi < 0 else ""


def _glance(by_group: dict[tuple[str, str], list[Row]], marks: dict[tuple[str, str, str], str], ref: str,
            title: Callable[[tuple[str, str]], str]) -> str:
    """One line per cell: the best objective, and those whose paired 95% CI against the reference excludes 0."""
    trs = []
    for (dataset, condition), rows in by_group.items():
        best = rows[0]
        side = {m: [r.objective for r in rows if marks[(dataset, condition, r.objective)] == m]
                for m in ("sig-better", "sig-worse")}
        trs.append(f'<tr><td class="cell">{esc(title((dataset, condition)))}</td>'
                   f'<td class="obj">{esc(best.objective)}</td>'
                   f"{num(best.score.mean)}{interval(best.score.low, best.score.high)}"
                   f'<td class="names sig-better">{"<br>".join(map(esc, side["sig-better"])) or "—"}</td>'
                   f'<td class="names sig-worse">{"<br>".join(map(esc, side["sig-worse"])) or "—"}</td></tr>')
    return table(("cell", "best", "mean", "95% CI", f"better than {ref}", f"worse than {ref}"), trs,
                 cls="glance", caption=f"“Better/worse than {esc(ref)}”: the 95% CI of the paired difference "
                                       "excludes 0 (not corrected for multiple comparisons; see the pairwise view).")


# ----------------------------------------------------------------------------- pairwise
def comparisons(data: ReportData) -> Section | None:
    """A critical-difference diagram across all cells, and every pair within each cell."""
    per_seed = data.per_seed()
    parts = []
    blocks = [{o: v[s] for o, v in objs.items() if s in v}
              for objs in per_seed.values() for s in sorted({s for v in objs.values() for s in v})]
    cd = critical_difference(blocks, data.objectives, higher_is_better=data.higher_is_better)
    if cd is not None:
        parts.append(
            "<h3>All cells: average ranks</h3>"
            + figure(figures.cd_figure(cd),
                     f"Average rank of each objective (1 = best) over the {cd.blocks} complete blocks, one per "
                     f"(dataset, condition, seed). Friedman test p {esc(_p(cd.friedman_p))}; objectives joined by "
                     f"a bar are not significantly different by the Nemenyi test (α = 0.05, CD = {cd.cd:.2f}).")
            + _rank_table(cd))
    ranked: dict[tuple[str, str], list[str]] = {}
    for r in data.rows:
        ranked.setdefault((r.dataset, r.condition), []).append(r.objective)
    for group, names in ranked.items():
        values = per_seed.get(group, {})
        names = [o for o in names if values.get(o)]
        if len(names) < 2:
            continue
        pw = pairwise(values, names, higher_is_better=data.higher_is_better)
        parts.append(f"<h3>{esc(data.cell_title(group))}</h3>" + figure(
            figures.pairwise_figure(pw, data.cell_title(group), data.metric),
            "Each cell: mean paired difference row − column over common seeds (blue: row better), the paired "
            "t-test p-value Holm-adjusted over the cell's pairs (bold below 0.05), and the seeds row won."))
    if not parts:
        return None
    return Section("comparisons", "Pairwise comparisons", "".join(parts),
                   "Which differences survive a correction for testing every pair at once.")


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _rank_table(cd: CriticalDifference) -> str:
    trs = [f"<tr><td class=\"obj\">{esc(o)}</td>{num(r, 2)}</tr>" for o, r in zip(cd.objectives, cd.avg_rank)]
    return table(("objective", "average rank"), trs, cls="compact")


# ----------------------------------------------------------------------------- reliability
def reliability(data: ReportData) -> Section | None:
    """Reliability diagrams per objective and cell, recomputed from the stored checkpoints."""
    cells, skipped = collect_reliability(data.plan, data.store, set(data.finals))
    colors = figures.palette(data.objectives)
    parts = [figure(figures.reliability_figure(cells[g], data.cell_title(g), colors),
                    f"Accuracy per confidence bin ({N_BINS} equal-width bins, seeds pooled) against the diagonal "
                    "of perfect calibration; hatched: the gap; grey strip: share of predictions per bin. "
                    "ECE is the metric's value on the pooled test predictions.")
             for g in data.groups if cells.get(g)]
    if skipped:
        items = "".join(f"<li><code>{esc(rid)}</code>: {esc(why)}</li>" for rid, why in sorted(skipped.items()))
        parts.append(note(f"{len(skipped)} finished run(s) could not be reloaded and are left out:") +
                     f'<ul class="skipped">{items}</ul>')
    if not cells:
        return Section("reliability", "Reliability", "".join(parts)) if skipped else None
    return Section("reliability", "Reliability", "".join(parts),
                   "Test-set probabilities recomputed from each run's stored final weights.")


# ----------------------------------------------------------------------------- curves
def training_curves(data: ReportData) -> Section | None:
    """Per-epoch train loss and test metrics: mean over seeds with the min-max band, per cell."""
    colors = figures.palette(data.objectives)
    stored = {m for by_metric in data.series.values() for m in by_metric}
    metrics = [m for m in dict.fromkeys((data.metric, *CURVE_METRICS)) if m in stored]
    if not metrics:
        return None
    by_metric = {m: curves(data.plan, data.series, m) for m in metrics}
    log_x = max(e for c in _all_curves(by_metric) for e in c.epochs) >= LOG_X_EPOCHS
    groups = [g for g in data.groups if any(g in v for v in by_metric.values())]
    if len(groups) == 1:  # one cell: every metric side by side in one figure
        panels = [(m, m, by_metric[m][groups[0]]) for m in metrics if groups[0] in by_metric[m]]
        figs = [(data.cell_title(groups[0]), figures.curves_figure(panels, colors, data.reference, log_x=log_x))]
    else:  # one figure per metric, cells side by side on a shared axis so conditions compare at a glance
        figs = [(m, figures.curves_figure([(data.cell_title(g), m, by_metric[m][g]) for g in groups
                                           if g in by_metric[m]], colors, data.reference, share_y=True, log_x=log_x))
                for m in metrics]
    body = "".join(f"<h3>{esc(t)}</h3>" + figure(img) for t, img in figs)
    return Section("curves", "Training curves", body,
                   "Mean over seeds (line) and min–max across seeds (band) at every evaluated epoch; "
                   "the reference objective is drawn thicker.")


def _all_curves(by_metric: dict[str, dict[tuple[str, str], dict[str, Curve]]]) -> list[Curve]:
    return [c for groups in by_metric.values() for objs in groups.values() for c in objs.values()]


# ----------------------------------------------------------------------------- diagnostics
def diagnostics(data: ReportData) -> Section | None:
    """The spec's diagnostics over training, and their last values (as the terminal report prints them).

    A diagnostic that reports one value per level (``acc@0.875``, ``acc@4bit``: a
    pruning or quantization curve) is drawn over its levels at the last epoch
    instead of one panel per level over epochs.
    """
    labels = data.diagnostic_labels
    if not labels:
        return None
    colors = figures.palette(data.objectives)
    names = sorted({n for by_metric in data.series.values() for n in by_metric
                    if any(n == p or n.startswith(p + ".") for p in labels)},
                   key=lambda n: (labels.index(n.split(".")[0]) if n.split(".")[0] in labels else len(labels), n))
    if not names:
        return Section("diagnostics", "Diagnostics over training",
                       note(f"The spec asks for {esc(', '.join(labels))}, but no values were stored."))
    by_level = profiles(data.plan, data.series, labels)
    over_epochs = [n for n in names if (level_family(n) or ("",))[0] not in by_level]
    by_name = {n: curves(data.plan, data.series, n) for n in over_epochs}
    last = last_values(data.plan, data.series, labels)
    parts = []
    for g in data.groups:
        panels = [(n, n, by_name[n][g]) for n in over_epochs if g in by_name[n]]
        level_panels = [(f"{family}·, last epoch", family.rstrip("@"), by_level[family][g])
                        for family in by_level if g in by_level[family]]
        if not panels and not level_panels:
            continue
        parts.append(f"<h3>{esc(data.cell_title(g))}</h3>")
        if panels:
            parts.append(figure(figures.curves_figure(panels, colors, data.reference)))
        by_scale: dict[str | None, list] = {}
        for panel in level_panels:  # one figure per x scale
            by_scale.setdefault(_level_scale(panel[2]), []).append(panel)
        for scale, same in by_scale.items():
            parts.append(figure(figures.curves_figure(same, colors, data.reference, x_label="level", x_scale=scale)))
        objs = last.get(g, {})
        rows = sorted({n for v in objs.values() for n in v}, key=names.index)
        trs = [f'<tr><td class="obj">{esc(n)}</td>{"".join(num(v.get(n), 4) for v in objs.values())}</tr>'
               for n in rows]
        parts.append(table(("diagnostic", *objs), trs, cls="compact diag", caption="last value, mean over seeds"))
    return Section("diagnostics", "Diagnostics over training", "".join(parts),
                   "Each diagnostic at the epochs it ran (epoch 0 is the initialisation): mean over seeds, "
                   "min–max band; per-level diagnostics over their levels at the last epoch.")


def _level_scale(objs: dict[str, Curve]) -> str | None:
    """A logit x axis for levels in (0, 1) that reach past 0.9: halving densities (0.5, 0.75, ..., 0.99)
    bunch up near 1 on a linear one."""
    levels = [x for c in objs.values() for x in c.epochs]
    return "logit" if 0 < min(levels) and max(levels) < 1 and max(levels) > 0.9 else None


# ----------------------------------------------------------------------------- environment
def environment(data: ReportData) -> Section:
    """Where and with what the runs were produced, every run's id, and the spec text itself."""
    runs = data.runs
    done = [r for r in data.plan if runs.get(r.run_id, {}).get("status") == "done"]
    failed = [r for r in data.plan if runs.get(r.run_id, {}).get("status") == "failed"]
    durations = [runs[r.run_id]["duration_s"] for r in done]
    finished = [runs[r.run_id]["finished_at"] for r in done]
    summary = [("runs in the plan", str(len(data.plan))), ("finished", str(len(done))), ("failed", str(len(failed))),
               ("not run yet", str(len(data.plan) - len(done) - len(failed))),
               ("compute, summed over runs", _duration(sum(durations))),
               ("median run", _duration(sorted(durations)[len(durations) // 2]) if durations else "—"),
               ("finished between", f"{_when(min(finished))} and {_when(max(finished))}" if finished else "—"),
               ("store", data.safe_store_url)]
    parts = ['<div class="cols"><div>', "<h3>Runs</h3>" + table(
        ("", ""), [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary], cls="kv"), "</div><div>"]
    values: dict[str, Counter] = {}
    for r in done:
        for k, v in runs[r.run_id]["environment"].items():
            values.setdefault(k, Counter())[str(v)] += 1
    trs = [f'<tr class="{"differs" if len(c) > 1 else ""}"><th>{esc(k)}</th><td>'
           + "<br>".join(f"{esc(v)}" + (f" <span class=\"count\">({n} runs)</span>" if len(c) > 1 else "")
                         for v, n in c.most_common()) + "</td></tr>" for k, c in sorted(values.items())]
    parts.append("<h3>Environment</h3>" + table(("", ""), trs, cls="kv")
                 + note("Recorded by every run when it trained; a highlighted key differs between runs.")
                 + "</div></div>")
    if failed:
        items = "".join(f"<li><code>{esc(r.run_id)}</code> {esc(r.objective)} · {esc(r.condition)} · seed {r.seed}: "
                        f"{esc(runs[r.run_id]['error'] or '')}</li>" for r in failed)
        parts.append(f'<h3>Failed runs</h3><ul class="failed">{items}</ul>')
    parts.append(_run_list(data))
    parts.append(f"<h3>Spec</h3><p class=\"meta\"><code>{esc(data.spec_path.name)}</code> · sha256 "
                 f"<code>{data.spec_sha256[:16]}</code></p><pre class=\"spec\">{esc(data.spec_text)}</pre>")
    return Section("environment", "Environment and spec", "".join(parts),
                   "What produced these numbers; <code>losslab show RUN_ID</code> prints any run in full.")


def _run_list(data: ReportData) -> str:
    metric = data.metric
    trs = []
    for r in data.plan:
        info = data.runs.get(r.run_id)
        status = info["status"] if info else "pending"
        value = data.scored.get(r.run_id, {}).get(metric)
        trs.append(f'<tr class="{esc(status)}"><td><code>{esc(r.run_id)}</code></td><td>{esc(r.dataset)}</td>'
                   f"<td>{esc(r.condition)}</td><td>{esc(r.objective)}</td><td>{r.seed}</td><td>{esc(status)}</td>"
                   f"{num(value, 4)}<td>{esc(_duration(info['duration_s']) if info else '—')}</td></tr>")
    head = ("run id", "dataset", "condition", "objective", "seed", "status", metric, "time")
    return f"<details><summary>All {len(data.plan)} runs</summary>{table(head, trs, cls='runs')}</details>"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def default_sections(extra: tuple[SectionFn, ...] = ()) -> list[SectionFn]:
    """The page's sections in order; ``extra`` ones go before the environment, which closes the page."""
    return [leaderboard, comparisons, reliability, training_curves, diagnostics, *extra, environment]


__all__ = ["Section", "SectionFn", "default_sections"]
