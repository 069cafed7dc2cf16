"""The report's scaling-law section: the fit a spec's ``scaling:`` block describes, on its stored runs.

It is the same fit as ``losslab scaling fit --spec SPEC --store URL`` (one code
path: :func:`losslab.scaling.cli.run_job`), drawn with
:func:`losslab.scaling.plot.figure_for`. A fit that cannot be made yet (too
few finished runs, say) is reported on the page with its one-line reason,
never as a fitted curve.
"""

from __future__ import annotations

import base64
import io

from losslab.report.data import ReportData
from losslab.report.figures import DPI, STYLE, Image
from losslab.report.markup import esc, figure, note, table
from losslab.report.sections import Section

LEVEL = 0.95


def _image(fig, alt: str) -> Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    w, h = fig.get_size_inches()
    return Image("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
                 round(w * 96), round(h * 96), alt)


def scaling_fit(data: ReportData) -> Section | None:
    """The spec's scaling-law fit with bootstrap intervals and its held-out predictions; None without a block."""
    if data.spec.scaling is None:
        return None
    import matplotlib

    from losslab.scaling.cli import run_job, spec_job
    from losslab.scaling.plot import figure_for

    title = f"Scaling law: {data.spec.scaling.form}"
    try:
        job = spec_job(data.spec_path, data.store_url)
        values, y, fit, held = run_job(job)
    except ValueError as err:  # e.g. fewer finished runs than the form has parameters
        return Section("scaling", title, note(f"No fit: {esc(err)}"), "")
    with matplotlib.rc_context(STYLE):
        fig = figure_for(fit, values, y, None if held is None else held.held_out, level=LEVEL, ylabel=job.target)
        img = _image(fig, f"{job.form.name} fit of {job.target}")
    cols = ", ".join(f"{esc(k)} = {esc(v)}" for k, v in job.cols.items())
    parts = [figure(img, f"{esc(job.form.name)} fitted to {esc(job.target)} with {cols}; bands are "
                         f"{LEVEL:.0%} bootstrap intervals over {job.n_boot} resamples of the runs."),
             f"<pre>{esc(fit.summary(LEVEL))}</pre>"]
    if held is not None:
        band = held.prediction_band(LEVEL)
        rows = []
        for i, idx in enumerate(held.held_out):
            obs, pred = float(held.observed[i]), float(held.predicted[i])
            rows.append(f"<tr><td>{int(idx)}</td><td>{obs:.4g}</td><td>{pred:.4g}</td>"
                        f"<td>{100 * (pred - obs) / obs:+.1f}%</td>"
                        f"<td>[{band[0][i]:.4g}, {band[1][i]:.4g}]</td></tr>")
        low, high = held.error_ci(LEVEL)
        parts.append(table(("row", "observed", "predicted", "error", f"{LEVEL:.0%} prediction band"), rows,
                           caption=f"The {len(held.held_out)} largest runs, left out of the fit and predicted: "
                                   f"mean |relative error| {100 * held.mean_abs_rel_error:.1f}% "
                                   f"[{100 * low:.1f}%, {100 * high:.1f}%]."))
    return Section("scaling", title, "".join(parts), f"{fit.n} runs fitted (seeds averaged).")
