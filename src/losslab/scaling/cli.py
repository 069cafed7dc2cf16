"""``losslab scaling``: fit a scaling law to a CSV, or to a spec's stored runs, from the command line.

Examples (Epoch's refit of the Chinchilla data; the MNIST-1D sweep of examples/scaling.yaml)::

    losslab scaling fit chinchilla_svg_extracted.csv --form chinchilla \\
        --col N="Model Size" --col D="Training FLOP/(6*Model Size)" --drop-highest 5
    losslab scaling fit --spec examples/scaling.yaml --store sqlite:///scaling.db --plot fit.png

For a spec, the columns are those of :func:`losslab.scaling.runs.runs_table`
(final metrics, ``model.width``-style settings, ``params``, ``n_train``, ...), and
its ``scaling:`` block supplies ``--form``, ``--col``, ``--target``, ``--holdout``
and ``--by`` unless the flags are given.

Every user error exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from losslab.scaling.expr import Table, evaluate, read_csv
from losslab.scaling.fitting import Fit, drop_highest, fit
from losslab.scaling.forms import Form, get_form
from losslab.scaling.validate import HoldoutResult, leave_largest_out

scaling_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fit scaling laws.")


def _pairs(items: list[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` strings -> dict; the first ``=`` splits."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier() or not value.strip():
            raise ValueError(f"Expected `{option}` to be NAME=VALUE, but got {item!r}.")
        if key in out:
            raise ValueError(f"Expected each name once in `{option}`, but {key!r} is given twice.")
        out[key] = value.strip()
    return out


def _literal(text: str) -> Any:
    """A hyper-parameter value from the command line: bool, int, float or string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _columns(form: Form, cols: dict[str, str], table: Table) -> dict[str, np.ndarray]:
    """Each variable of ``form`` from its ``--col`` expression, or from a CSV column of the same name."""
    extra = sorted(set(cols) - set(form.variables))
    if extra:
        raise ValueError(f"Expected `--col` names among the variables of {form.name!r} "
                         f"({', '.join(form.variables)}), but got {', '.join(map(repr, extra))}.")
    exprs = {v: cols.get(v, f"`{v}`" if v in table.header else "") for v in form.variables}
    missing = [v for v, e in exprs.items() if not e]
    if missing:
        raise ValueError(f"Expected `--col VAR=EXPR` for each variable of {form.name!r} "
                         f"({', '.join(form.variables)}), but got none for {', '.join(missing)}; "
                         f"valid columns: {table.valid()}.")
    return {v: evaluate(e, table) for v, e in exprs.items()}


@dataclass
class _Job:
    """What to fit, from a CSV or from a spec's stored runs (flags override the spec's ``scaling`` block)."""

    table: Table
    form: Form
    cols: dict[str, str]
    target: str
    holdout: int
    by: str | None
    n_boot: int
    source: dict[str, Any]


def _job(csv_path: Path | None, spec_path: Path | None, store_url: str, form_name: str | None,
         cols: dict[str, str], target: str | None, hyper: dict[str, str], holdout: int | None, by: str | None,
         n_boot: int | None) -> _Job:
    if (csv_path is None) == (spec_path is None):
        raise ValueError("Expected exactly one of CSV or `--spec SPEC` (with `--store URL`), but got "
                         f"{'both' if csv_path is not None else 'neither'}.")
    block = None
    if spec_path is not None:
        from losslab.engine.spec import load_spec  # the engine only for fits of stored runs
        from losslab.scaling.runs import runs_table

        spec = load_spec(spec_path)
        block = spec.scaling
        if form_name is None and block is None:
            raise ValueError(f"Expected `--form` or a `scaling:` block in {spec_path}, but got neither.")
        table = runs_table(spec, store_url)
        source: dict[str, Any] = {"spec": str(spec_path), "store": store_url}
    else:
        if form_name is None:
            raise ValueError("Expected `--form NAME` with a CSV (see `losslab list --kind scaling`), but got none.")
        table = read_csv(csv_path)
        source = {"csv": str(csv_path)}
    # The block's variables (cols, hyper, by) describe its form: another --form starts from none of them.
    same = block if block is not None and form_name in (None, block.form) else None
    hyper_values = {k: _literal(v) for k, v in hyper.items()} if hyper or same is None else dict(same.hyper)
    form = get_form(form_name or block.form, **hyper_values)
    return _Job(table, form, {**(same.cols if same else {}), **cols},
                target or (block.target if block else "loss"), holdout if holdout is not None else (
                    block.holdout if block else 0), by or (same.by if same else None),
                n_boot if n_boot is not None else (block.boot if block else 200), source)


def spec_job(spec_path: Path, store_url: str) -> _Job:
    """The fit a spec's ``scaling:`` block describes, on its stored runs (the HTML report's scaling section)."""
    return _job(None, spec_path, store_url, None, {}, None, {}, None, None, None)


def run_job(job: _Job, *, drop: int = 0, seed: int = 0) -> tuple[dict[str, Any], Any, Fit, HoldoutResult | None]:
    """Fit ``job``: ``(data, y, fit, held)``, with ``held`` the leave-largest-out result when it holds some out."""
    data = _columns(job.form, job.cols, job.table)
    y = evaluate(job.target, job.table)
    if drop:
        if job.holdout:
            raise ValueError("Expected either `--drop-highest` or `--holdout`, but got both.")
        data, y = drop_highest(data, y, drop)
    if job.holdout:
        sizes = evaluate(job.by, job.table) if job.by else data[job.form.variables[0]]
        held = leave_largest_out(job.form, data, y, by=sizes, k=job.holdout, n_boot=job.n_boot, seed=seed)
        return data, y, held.fit, held
    return data, y, fit(job.form, data, y, n_boot=job.n_boot, seed=seed), None


@scaling_app.command("fit")
def fit_command(
    csv_path: Path | None = typer.Argument(None, metavar="[CSV]", help="CSV file with a header row "
                                           "(or use --spec and --store)."),
    spec_path: Path | None = typer.Option(None, "--spec", help="Fit the stored runs of this spec instead of a CSV."),
    store_url: str = typer.Option("sqlite:///losslab.db", "--store", envvar="LOSSLAB_STORE",
                                  help="Store of the spec's runs (SQLAlchemy URL)."),
    form_name: str | None = typer.Option(None, "--form", help="Scaling-law form (see `losslab list --kind scaling`)."),
    col: list[str] = typer.Option([], "--col", metavar="VAR=EXPR", help="VAR=EXPR: a form variable as a column name or "
                                  "arithmetic over columns, e.g. D=\"Training FLOP/(6*Model Size)\"."),
    target: str | None = typer.Option(None, "--target", help="The fitted quantity: a column or an expression "
                                      "(default: loss for a CSV, the spec's scaling.target or test_nll for runs)."),
    hyper: list[str] = typer.Option([], "--hyper", metavar="NAME=VALUE", help="NAME=VALUE hyper-parameter of the form."),
    drop: int = typer.Option(0, "--drop-highest", min=0, help="Exclude the K rows with the highest target."),
    holdout: int | None = typer.Option(None, "--holdout", min=0, help="Leave out the K largest rows (by --by) and "
                                       "predict them."),
    by: str | None = typer.Option(None, "--by", metavar="EXPR", help="Size that orders rows for --holdout "
                                  "(default: the form's first variable)."),
    n_boot: int | None = typer.Option(None, "--boot", min=0, help="Bootstrap resamples of the rows (0: none; "
                                      "default 200)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    level: float = typer.Option(0.95, "--level", min=0.0, max=1.0, help="Confidence level of the intervals."),
    plot: Path | None = typer.Option(None, "--plot", metavar="PATH.png", help="Write a figure of the fit."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Fit a scaling-law form to the rows of CSV, or to a spec's stored runs, with bootstrap intervals."""
    from losslab.cli import user_errors  # late: losslab.cli mounts this app

    with user_errors():
        if plot is not None:
            _check_plot_path(plot)
        cols = _pairs(col, "--col")
        job = _job(csv_path, spec_path, store_url, form_name, cols, target, _pairs(hyper, "--hyper"), holdout,
                   by, n_boot)
        start = time.perf_counter()
        data, y, result, held = run_job(job, drop=drop, seed=seed)
        wall = time.perf_counter() - start
        out = result.to_dict(level)
        if held is not None:
            out["holdout"] = _holdout_dict(held, job, level)
        if plot is not None:
            from losslab.scaling.plot import figure_for, save_figure

            save_figure(figure_for(result, data, y, None if held is None else held.held_out, level=level,
                                   ylabel=job.target), plot)
    if as_json:
        out.update(wall_s=round(wall, 3), dropped=drop, **job.source,
                   columns={**{v: c for v, c in job.cols.items()}, "target": job.target})
        print(json.dumps(out, default=float))
        return
    print(result.summary(level))
    print(f"  {result.n} rows used ({drop} highest dropped, {job.holdout} held out); wall time {wall:.2f} s")
    if held is not None:
        print(_holdout_text(out["holdout"], level))
    if plot is not None:
        print(f"  figure: {plot}")


def _check_plot_path(path: Path) -> None:
    """Fail before any fitting when the figure could not be written."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"Expected `--plot` to be a path ending in .png, but got {str(path)!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"Expected `--plot` to be in an existing folder, but {str(path.parent)!r} does not exist.")
    if path.is_dir():
        raise ValueError(f"Expected `--plot` to be a file, but {str(path)!r} is a folder.")


def _holdout_dict(held: HoldoutResult, job: _Job, level: float) -> dict[str, Any]:
    out: dict[str, Any] = {"k": int(held.held_out.size), "by": job.by or job.form.variables[0],
                           "rows": held.held_out.tolist(), "observed": held.observed.tolist(),
                           "predicted": held.predicted.tolist(), "rel_error": held.rel_error.tolist(),
                           "mean_abs_rel_error": held.mean_abs_rel_error}
    if held.fit.boot is not None and held.fit.n_boot_failed < len(held.fit.boot):
        lo, hi = held.prediction_band(level)
        out.update(prediction_lo=lo.tolist(), prediction_hi=hi.tolist(),
                   mean_abs_rel_error_ci=list(held.error_ci(level)))
    return out


def _holdout_text(h: dict[str, Any], level: float) -> str:
    lines = [f"  held out: the {h['k']} largest rows by {h['by']}"]
    for i, (o, p, e) in enumerate(zip(h["observed"], h["predicted"], h["rel_error"])):
        band = f"  {level:.0%} interval [{h['prediction_lo'][i]:.6g}, {h['prediction_hi'][i]:.6g}]" \
            if "prediction_lo" in h else ""
        lines.append(f"    row {h['rows'][i]}: observed {o:.6g}, predicted {p:.6g} ({e:+.2%}){band}")
    ci = h.get("mean_abs_rel_error_ci")
    band = f", {level:.0%} bootstrap CI [{ci[0]:.2%}, {ci[1]:.2%}]" if ci else ""
    lines.append(f"  mean |relative error| on held-out rows: {h['mean_abs_rel_error']:.2%}{band}")
    return "\n".join(lines)
