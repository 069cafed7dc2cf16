"""The report's matplotlib figures, each returned as a PNG ``data:`` URI (the page loads nothing).

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, not
``pyplot``: no global figure registry, nothing to close, safe to call from any
thread. Every figure takes one colour per objective from :func:`palette`, so an
objective has the same colour in every figure of a report.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from losslab.engine.curves import Curve
from losslab.engine.stats import Row
from losslab.report.pairwise import CriticalDifference, Pairwise
from losslab.report.reliability import Reliability

DPI = 150  # rendered at 96 CSS px per inch, so ~1.5x: sharp on high-density screens
STYLE = {
    "font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8.5, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.25, "grid.linewidth": 0.6, "axes.edgecolor": "#555555", "axes.titleweight": "bold",
    "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
}
GROUP_COLUMNS = 3  # panels per figure row when a figure has one panel per (dataset, condition)


@dataclass(frozen=True)
class Image:
    """A rendered figure: its ``data:image/png;base64,...`` URI and its display size in CSS pixels."""

    uri: str
    width: int
    height: int
    alt: str


def palette(objectives: Sequence[str]) -> dict[str, str]:
    """One distinct colour per objective, in the given (spec) order: tab10, then tab20 beyond ten."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if len(objectives) <= 10 else "tab20"]
    return {o: to_hex(cmap(i % cmap.N)) for i, o in enumerate(objectives)}


def _render(alt: Callable[..., str]) -> Callable[[Callable[..., Any]], Callable[..., Image]]:
    """Build the figure under the report style and encode it; ``alt(*args)`` gives its text alternative."""
    def wrap(build: Callable[..., Any]) -> Callable[..., Image]:
        @functools.wraps(build)
        def run(*args: Any, **kwargs: Any) -> Image:
            import matplotlib

            with matplotlib.rc_context(STYLE):
                fig = build(*args, **kwargs)
                buf = io.BytesIO()
                # No metadata: the PNG then carries no software string or URL, and equal figures give equal bytes.
                fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
            w, h = fig.get_size_inches()
            uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
            return Image(uri, round(w * 96), round(h * 96), alt(*args, **kwargs))
        return run
    return wrap


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(fig: Any, n: int, columns: int, **kw: Any) -> list[Any]:
    cols = min(columns, n)
    axes = fig.subplots(math.ceil(n / cols), cols, squeeze=False, **kw).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _legend(fig: Any, colors: dict[str, str], names: Sequence[str], reference: str | None = None) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[o], lw=2.4 if o == reference else 1.6, marker="o", ms=3.5) for o in names]
    fig.legend(handles, list(names), loc="outside upper center", ncol=min(len(names), 6), frameon=False)


# ----------------------------------------------------------------------------- leaderboard
@_render(lambda cells, metric, *a, **k: f"{metric}: mean and 95% CI per objective, per seed as dots")
def leaderboard_figure(cells: list[tuple[str, list[Row], dict[str, dict[int, float]]]], metric: str,
                       colors: dict[str, str], reference: str) -> Any:
    """One panel per (dataset, condition): mean (marker), 95% t-interval (bar), each seed (dot), ranked top-down.

    ``cells`` holds ``(title, rows in rank order, objective -> seed -> value)``; the
    reference objective's mean is the dashed vertical line.
    """
    k = max(len(rows) for _, rows, _ in cells)
    longest = max(len(r.objective) for _, rows, _ in cells for r in rows)
    per_row = GROUP_COLUMNS if longest <= 22 else 2  # long labels leave a third panel no room to plot
    cols = min(per_row, len(cells))
    fig = _figure({1: 7.0, 2: 11.0}.get(cols, 11.4), (0.27 * k + 0.95) * math.ceil(len(cells) / cols) + 0.1)
    for ax, (title, rows, per_seed) in zip(_grid(fig, len(cells), per_row), cells):
        for y, row in enumerate(rows):
            c = colors[row.objective]
            seeds = list(per_seed.get(row.objective, {}).values())
            ax.scatter(seeds, np.full(len(seeds), y + 0.22), s=7, color=c, alpha=0.55, linewidths=0, zorder=2)
            if not math.isnan(row.score.low):
                ax.plot([row.score.low, row.score.high], [y, y], color=c, lw=2.2, solid_capstyle="butt", zorder=3)
            ax.plot([row.score.mean], [y], marker="o", ms=5, color=c, mec="white", mew=0.7, zorder=4)
            if row.objective == reference:
                ax.axvline(row.score.mean, color="#444444", lw=0.8, ls="--", zorder=1)
        ax.set_yticks(range(len(rows)), [f"{r.rank}. {r.objective}" for r in rows])
        ax.set_ylim(len(rows) - 0.4, -0.6)
        ax.grid(axis="y", visible=False)
        ax.set_title(_fit(title, 38 if cols > 1 else 80), loc="left")
        ax.set_xlabel(metric)
    return fig


@_render(lambda pw, title, metric, *a, **k: f"pairwise paired differences and Holm-adjusted p-values, {title}")
def pairwise_figure(pw: Pairwise, title: str, metric: str) -> Any:
    """Heatmap of the mean paired difference row − column (oriented: positive = row better), with
    the Holm-adjusted paired t-test p-value and the seeds won in each cell. ``title`` is its alt text."""
    from matplotlib.colors import TwoSlopeNorm

    k = len(pw.objectives)
    size = max(2.6, 0.58 * k + 0.6)
    label_in = 0.075 * max(len(o) for o in pw.objectives) + 0.4
    fig = _figure(size + label_in + 1.0, size + 0.3)
    ax = fig.subplots()
    lim = np.nanmax(np.abs(pw.delta)) if np.isfinite(pw.delta).any() else 1.0
    lim = lim if lim > 0 else 1.0
    im = ax.imshow(pw.delta, cmap="RdBu", norm=TwoSlopeNorm(0.0, -lim, lim))
    for i in range(k):
        for j in range(k):
            if i == j or pw.n[i, j] == 0:
                continue
            strong = abs(pw.delta[i, j]) > 0.6 * lim
            p = pw.p_holm[i, j]
            text = f"{pw.delta[i, j]:+.3f}\np={'—' if math.isnan(p) else _p(p)}\n{int(pw.wins[i, j])}/{pw.n[i, j]}"
            weight = "bold" if not math.isnan(p) and p < 0.05 else "normal"
            ax.text(j, i, text, ha="center", va="center", fontsize=6.3 if k > 6 else 7, linespacing=1.15,
                    color="white" if strong else "#222222", fontweight=weight)
    # Columns by number, rows by number and name: long names would otherwise squeeze the matrix.
    ax.set_xticks(range(k), [str(i + 1) for i in range(k)])
    ax.set_yticks(range(k), [f"{o}  {i + 1}" for i, o in enumerate(pw.objectives)])
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"Δ {metric}, row − column (> 0: row better)")
    return fig


def _p(p: float) -> str:
    return "<.001" if p < 0.001 else f"{p:.3f}"


@_render(lambda cd, *a, **k: f"critical-difference diagram over {cd.blocks} blocks")
def cd_figure(cd: CriticalDifference) -> Any:
    """Demšar's diagram: average ranks on an axis (best left); a bar joins objectives whose ranks
    differ by less than the Nemenyi critical difference, drawn above the axis for scale."""
    k = len(cd.objectives)
    half = math.ceil(k / 2)
    width = 10.0
    # Labels hang off both ends of the rank axis; the margin (in rank units) leaves room for the longest.
    label_in = 0.062 * max(len(f"{o} (0.00)") for o in cd.objectives) + 0.5
    margin = max(1.0, label_in * (k - 1) / max(width - 2 * label_in, 1.0))
    fig = _figure(width, 1.55 + 0.24 * half + 0.16 * len(cd.cliques))
    ax = fig.subplots()
    ax.set_axis_off()
    lo, hi = 1, k
    ax.set_xlim(lo - margin, hi + margin)
    top = 0.0
    ax.plot([lo, hi], [top, top], color="#222222", lw=1)
    for r in range(lo, hi + 1):
        ax.plot([r, r], [top, top + 0.12], color="#222222", lw=1)
        ax.text(r, top + 0.2, str(r), ha="center", va="bottom", fontsize=8)
    ax.plot([lo, lo + cd.cd], [top + 0.75, top + 0.75], color="#b2182b", lw=1.6)
    for x in (lo, lo + cd.cd):
        ax.plot([x, x], [top + 0.67, top + 0.83], color="#b2182b", lw=1.2)
    ax.text(lo + cd.cd / 2, top + 0.9, f"CD = {cd.cd:.2f}", ha="center", va="bottom", fontsize=8, color="#b2182b")
    step = 0.24
    for i, (name, r) in enumerate(zip(cd.objectives, cd.avg_rank)):
        left = i < half
        y = -(0.45 + len(cd.cliques) * 0.16 + step * (i if left else k - 1 - i))
        x_end = lo - 0.35 if left else hi + 0.35
        ax.plot([r, r, x_end], [top, y, y], color="#333333", lw=0.8)
        ax.text(x_end + (-0.08 if left else 0.08), y, f"{name} ({r:.2f})", ha="right" if left else "left",
                va="center", fontsize=8)
    for n, (i, j) in enumerate(cd.cliques):
        y = -(0.2 + 0.16 * n)
        ax.plot([cd.avg_rank[i] - 0.04, cd.avg_rank[j] + 0.04], [y, y], color="#111111", lw=3.2,
                solid_capstyle="round")
    ax.set_ylim(-(0.45 + len(cd.cliques) * 0.16 + step * half + 0.1), top + 1.25)
    return fig


# ----------------------------------------------------------------------------- reliability
@_render(lambda cells, title, *a, **k: f"reliability diagrams, {title}")
def reliability_figure(cells: dict[str, Reliability], title: str, colors: dict[str, str]) -> Any:
    """Small multiples, one per objective: accuracy per equal-width confidence bin (bars) against
    the diagonal, the gap to it shaded, the share of samples per bin as a strip, the pooled ECE."""
    n = len(cells)
    cols = min(4, n)
    fig = _figure(2.15 * cols + 0.2, 2.35 * math.ceil(n / cols) + 0.35)
    axes = _grid(fig, n, 4, sharex=True, sharey=True)
    for ax, (objective, rel) in zip(axes, cells.items()):
        b = rel.bins
        edges, width = b.edges, np.diff(b.edges)
        acc, conf = np.nan_to_num(b.accuracy), b.confidence
        filled = b.count > 0
        ax.bar(edges[:-1][filled], acc[filled], width=width[filled], align="edge", color=colors[objective],
               alpha=0.8, edgecolor="white", linewidth=0.5, zorder=2)
        for x, w, a, c in zip(edges[:-1][filled], width[filled], acc[filled], conf[filled]):
            ax.add_patch(_gap_patch(x, w, a, c))
        share = b.count / max(1, b.count.sum())
        ax.bar(edges[:-1], 0.12 * share / max(share.max(), 1e-12), width=width, align="edge", bottom=-0.15,
               color="#888888", alpha=0.6, linewidth=0, zorder=2)
        ax.plot([0, 1], [0, 1], color="#333333", lw=0.8, ls="--", zorder=4)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.16, 1.0)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_title(_wrap(objective), loc="left", color=colors[objective], fontsize=8)
        runs = len(rel.run_ece)
        ax.text(0.04, 0.95, f"ECE {b.ece:.3f}\n{runs} seed{'s' if runs != 1 else ''}, {int(b.count.sum())} pred.",
                transform=ax.transAxes, va="top", fontsize=7, linespacing=1.2,
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#cccccc", "lw": 0.5})
    for ax in axes[-cols:]:
        ax.set_xlabel("confidence")
    for ax in axes[::cols]:
        ax.set_ylabel("accuracy")
    fig.suptitle(_fit(title, 110), x=0.01, ha="left", fontsize=9, fontweight="bold")
    return fig


def _fit(title: str, width: int) -> str:
    """A panel title wrapped onto lines of at most ``width`` characters (breaking at commas and spaces)."""
    import textwrap

    return "\n".join(textwrap.wrap(title.replace(",", ", "), width)).replace(", ", ",") or title


def _wrap(label: str, width: int = 26) -> str:
    """A long ``name(params)`` label on lines of ``width`` characters, so panel titles do not collide."""
    return _fit(label.replace("(", " (", 1), width).replace(" (", "(", 1) if len(label) > width else label


def _gap_patch(x: float, w: float, acc: float, conf: float) -> Any:
    """The bin's miscalibration: from its accuracy to its mean confidence, hatched."""
    from matplotlib.patches import Rectangle

    return Rectangle((x, min(acc, conf)), w, abs(conf - acc), facecolor="none", edgecolor="#b2182b",
                     hatch="////", linewidth=0.0, alpha=0.7, zorder=3)


# ----------------------------------------------------------------------------- curves
Panel = tuple[str, str, dict[str, Curve]]  # (title, y label, objective -> curve)


@_render(lambda panels, *a, **k: "over epochs: " + ", ".join(t for t, _, _ in panels))
def curves_figure(panels: list[Panel], colors: dict[str, str], reference: str | None = None, *,
                  share_y: bool = False, log_x: bool = False, x_label: str = "epoch",
                  x_scale: str | None = None) -> Any:
    """One panel per entry: each objective's mean over seeds, its min-max band across seeds shaded.

    ``x_label``/``x_scale`` serve curves over something other than epochs (a
    diagnostic's levels); the x ticks are integers only for epochs.
    """
    from matplotlib.ticker import MaxNLocator

    names = [o for o in colors if any(o in objs for _, _, objs in panels)]
    per_row = 2 if len(panels) in (2, 4) else GROUP_COLUMNS
    cols = min(per_row, len(panels))
    fig = _figure(3.8 * cols, 2.5 * math.ceil(len(panels) / cols) + 0.45)
    axes = _grid(fig, len(panels), per_row, sharey=share_y and _comparable(panels))
    for ax, (title, ylabel, objs) in zip(axes, panels):
        for objective in names:
            c = objs.get(objective)
            if c is None:
                continue
            wide = objective == reference
            ax.plot(c.epochs, c.mean, color=colors[objective], lw=1.9 if wide else 1.2, zorder=3 if wide else 2,
                    marker="o" if len(c.epochs) <= 3 else None, ms=3)
            ax.fill_between(c.epochs, c.low, c.high, color=colors[objective], alpha=0.13, linewidth=0)
        ax.set_title(_fit(title, 40), loc="left")
        ax.set_xlabel(x_label)
        ax.set_ylabel(ylabel)
        if x_label == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_x:
            ax.set_xscale("symlog", linthresh=1)
        elif x_scale is not None:
            ax.set_xscale(x_scale)
    _legend(fig, colors, names, reference)
    return fig


def _comparable(panels: list[Panel]) -> bool:
    """Share a y axis only when the panels' ranges are of one order of magnitude."""
    spans = [max(max(c.high) for c in objs.values()) - min(min(c.low) for c in objs.values())
             for _, _, objs in panels if objs]
    return bool(spans) and min(spans) > 0 and max(spans) / min(spans) < 20
