"""The ``losslab`` command line: run, status, report, export, list, show (and ``scaling``).

Every user error (a malformed spec, an unknown component, a bad store URL)
exits with status 2 and one line on stderr, before anything is written.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from losslab.core.registry import KINDS, REGISTRY
from losslab.engine.plan import RunSpec, make_plan, reference_label
from losslab.engine.spec import RANKING_METRICS, Spec, SpecError, load_spec
from losslab.engine.store import DEFAULT_STORE, Store, StoreError, StoreMissing
from losslab.engine.store_backend import masked
from losslab.scaling.cli import scaling_app

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="losslab: compare training objectives with proper statistics.")
app.add_typer(scaling_app, name="scaling", help="Fit scaling laws.")
# Piped output (make, CI logs) gets room for the report table instead of Rich's 80-column default.
console = Console() if Console().is_terminal else Console(width=140)
err_console = Console(stderr=True)

StoreOpt = typer.Option(DEFAULT_STORE, "--store", help="SQLAlchemy database URL.", envvar="LOSSLAB_STORE")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
EXECUTORS = ("auto", "local", "vmap", "ray")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user errors into one stderr line and exit status 2."""
    try:
        yield
    except (SpecError, StoreError, ValueError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _plan(spec_path: Path) -> tuple[Spec, list[RunSpec]]:
    spec = load_spec(spec_path)
    return spec, make_plan(spec)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _existing_store(url: str) -> Store | None:
    """The store at ``url``, or None when there is none yet (no SQLite file, or a database without losslab tables).

    Nothing is created. A URL that cannot be opened (malformed, no driver, server unreachable, bad credentials,
    no such database) raises StoreError: one line naming `--store`, within the connect timeout.
    """
    try:
        return Store(url, create=False)
    except StoreMissing:
        return None


@app.command()
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML experiment spec."),
    store_url: str = StoreOpt,
    workers: int = typer.Option(1, "--workers", min=1, max=256, help="Local worker processes."),
    executor: str = typer.Option("auto", "--executor", metavar="auto|local|vmap|ray",
                                 help="vmap: runs that differ only in seed and numeric hyper-parameters train "
                                      "as one stacked model (the rest sequentially); local: every run on its "
                                      "own; auto (default): vmap wherever the grid allows; ray: Ray tasks "
                                      "(packs as in vmap), on --address or a local cluster."),
    address: Optional[str] = typer.Option(None, "--address", metavar="auto|HOST:PORT",
                                          help="--executor ray: the cluster to join (auto: RAY_ADDRESS or the one "
                                               "`ray start` ran here); default: a local cluster for this command."),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="--executor ray: CPUs each run (or pack) "
                                                                   "requests; it trains with that many threads."),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="--executor ray: GPUs each run (or pack) "
                                                                   "requests (train.device: cuda needs them)."),
) -> None:
    """Run every pending run of SPEC and store the results (finished runs are skipped)."""
    from losslab.engine.executor import execute, missing_teachers, pending_runs, teacher_runs
    from losslab.engine.packing import PackPlan, plan_packs
    from losslab.engine.preflight import preflight
    from losslab.engine.train import clear_data_cache

    with user_errors():
        if executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, but got {executor!r}")
        ray_opts = {"--address": address is not None, "--cpus-per-run": cpus_per_run != 1.0,
                    "--gpus-per-run": gpus_per_run != 0.0, "--workers": workers != 1}
        if executor == "ray" and ray_opts["--workers"]:
            raise ValueError("--workers is for the local executor; with --executor ray the cluster's size "
                             "sets the parallelism (see --cpus-per-run)")
        if executor != "ray" and any(v for k, v in ray_opts.items() if k != "--workers"):
            raise ValueError(f"{', '.join(k for k, v in ray_opts.items() if v and k != '--workers')} "
                             "need(s) --executor ray")
        spec, plan = _plan(spec_path)
        existing = _existing_store(store_url)
        missing = missing_teachers(plan, existing) if existing is not None else sorted(
            {t for r in plan for t in teacher_runs(r)} - {r.run_id for r in plan})
        if missing:
            raise ValueError(f"teacher run(s) {', '.join(missing)} are not finished in store {masked(store_url)}; "
                             "run the spec that trains them first (nothing was written)")
        # Data and models are checked before the store exists, so a spec that cannot run writes nothing.
        preflight(pending_runs(plan, existing) if existing is not None else plan)
        if executor == "ray":  # a bad request or an unreachable cluster stops here, in seconds, before the store
            from losslab.engine.ray_executor import check_address, check_resources

            check_resources(cpus_per_run, gpus_per_run, plan)
            check_address(address)
        if workers > 1:  # the workers load their own copies; the parent need not hold a large dataset
            clear_data_cache()
        store = Store(store_url)
        todo = pending_runs(plan, store)
    packing = plan_packs(todo) if executor != "local" and todo else PackPlan()
    where = f"on Ray ({address or 'a local cluster'})" if executor == "ray" else f"with {workers} worker(s)"
    console.print(f"[bold]{spec.name}[/]: {len(plan)} runs, {len(plan) - len(todo)} already stored, "
                  f"{len(todo)} to run {where}.")
    if executor != "local" and todo:
        console.print(f"executor {executor}: {packing.describe()}.", markup=False, highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # `kill` (SIGTERM) takes the same path as Ctrl-C, so the worker processes are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("training", total=len(todo))

            def on_result(result: Any, stored: bool) -> None:
                progress.advance(task)
                if result.status != "done":
                    progress.console.print(f"[red]failed[/] {result.run_id} {result.labels}: {result.error}",
                                           markup=True, highlight=False)

            if executor == "ray":
                from losslab.engine.ray_executor import execute_ray

                with user_errors():  # the cluster went away, or cannot meet the request
                    summary = execute_ray(todo, store, address=address, on_result=on_result, packs=packing.packs,
                                          cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
            else:
                summary = execute(todo, store, workers=workers, on_result=on_result, packs=packing.packs)
    except KeyboardInterrupt:
        done = sum(1 for s in store.statuses(r.run_id for r in plan).values() if s == "done")
        err_console.print(f"interrupted: {done}/{len(plan)} runs stored; run the same command to resume.")
        raise typer.Exit(130) from None
    console.print(f"done {summary.done}, failed {summary.failed}, done by another process {summary.by_others}, "
                  f"already stored by another writer {summary.skipped}. Store: {masked(store_url)}")
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def status(
    spec_path: Path = typer.Argument(..., metavar="SPEC"),
    store_url: str = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Count the runs of SPEC that are done, failed and pending."""
    with user_errors():
        spec, plan = _plan(spec_path)
        store = _existing_store(store_url)
        st = store.statuses(r.run_id for r in plan) if store else {}
    counts = {"total": len(plan), "done": 0, "failed": 0, "pending": 0}
    for r in plan:
        counts[{"done": "done", "failed": "failed"}.get(st.get(r.run_id, ""), "pending")] += 1
    if as_json:
        print(json.dumps({"spec": spec.name, **counts}))
        return
    console.print(f"{spec.name}: {counts['done']} done, {counts['failed']} failed, "
                  f"{counts['pending']} pending of {counts['total']}")


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@app.command()
def report(
    spec_path: Path = typer.Argument(..., metavar="SPEC"),
    store_url: str = StoreOpt,
    as_json: bool = JsonOpt,
    milestone: list[str] = typer.Option([], "--milestone", metavar="METRIC=LEVEL",
                                        help="Also report the first epoch each run reached METRIC >= LEVEL "
                                             "(e.g. test_accuracy=0.99); repeatable."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="PATH",
                                        help="Also write a self-contained HTML report (figures, tests, curves, "
                                             "environment, spec) to PATH (.html)."),
    metric: Optional[str] = typer.Option(None, "--metric", metavar="NAME",
                                         help="Rank by NAME instead of the spec's metric: a final metric "
                                              "(test_accuracy, test_nll, ...) or any stored per-epoch series, "
                                              "such as a diagnostic's key (prune_lamp.acc@0.875), at each "
                                              "run's last epoch."),
    direction: Optional[str] = typer.Option(None, "--direction", metavar="max|min",
                                            help="Whether higher (max) or lower (min) NAME is better; a final "
                                                 "metric knows its own, a series defaults to max."),
) -> None:
    """The ranked table: mean and 95% CI across seeds, and the paired difference to the reference."""
    from losslab.engine.curves import last_values, milestones, ranking_values, series
    from losslab.engine.stats import summarize

    with user_errors():
        levels = [_milestone_arg(m) for m in milestone]
        if direction is not None and direction not in ("max", "min"):
            raise ValueError(f"Expected `--direction` to be one of max, min, but got {direction!r}.")
        page = _html_report(spec_path, store_url, html, metric, direction) if html is not None else None
        spec, plan = _plan(spec_path)
        store = _existing_store(store_url)
        finals = store.final_metrics(r.run_id for r in plan) if store else {}
        reference = reference_label(spec, plan)
        metric = metric or spec.metric
        diag_labels = [d.label or d.name for d in spec.diagnostics]
        ranks_a_series = metric not in RANKING_METRICS
        data = series(plan, store) if store and (diag_labels or levels or ranks_a_series) else {}
        scored, higher = ranking_values(metric, direction, finals, plan, data)
        rows = summarize(plan, scored, metric=metric, higher_is_better=higher, reference=reference)
        diags = last_values(plan, data, diag_labels) if diag_labels else {}
        marks = {f"{m}={lv:g}": milestones(plan, data, m, lv) for m, lv in levels}
        if html is not None and page is not None:  # written after every check passed, before any output
            from losslab.report import write_html

            try:
                write_html(html, page)
            except OSError as exc:  # the folder went away or filled up since the check: nothing was left behind
                raise ValueError(f"cannot write `--html` {str(html)!r}: {exc.strerror or exc}") from None
            err_console.print(f"wrote {html}", highlight=False)
    if as_json:
        from losslab.engine.curves import milestone_dict

        print(json.dumps({"spec": spec.name, "metric": metric, "higher_is_better": higher, "reference": reference,
                          "runs_total": len(plan), "runs_done": len(finals),
                          "rows": [r.to_dict() for r in rows],
                          "diagnostics": [{"dataset": g[0], "condition": g[1], "objective": o, "last": v}
                                          for g, objs in diags.items() for o, v in objs.items()],
                          "milestones": [{"dataset": g[0], "condition": g[1], "objective": o, **milestone_dict(m)}
                                         for groups in marks.values() for g, objs in groups.items()
                                         for o, m in objs.items()]},
                         default=_json_default))
        return
    console.print(f"[bold]{spec.name}[/]: {metric}{'' if higher else ' (lower is better)'}, mean and 95% CI over "
                  f"n seeds; Δ is the paired "
                  f"per-seed difference to [bold]{reference}[/] (p: paired t-test); ECE: test ECE; "
                  f"mem: share of corrupted train labels the model reproduces. "
                  f"{len(finals)}/{len(plan)} runs stored.")
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r.dataset, r.condition), []).append(r)
    for (dataset, condition), group in groups.items():
        table = Table(title=f"{dataset} · {condition}", title_justify="left")
        for col in ("#", "objective", "mean", "95% CI", "Δ", "Δ 95% CI", "p", "ECE", "mem", "n"):
            table.add_column(col, justify="left" if col == "objective" else "right", no_wrap=True,
                             min_width=max(len(r.objective) for r in group) if col == "objective" else None)
        for r in group:
            d = r.delta
            table.add_row(str(r.rank), r.objective, _fmt(r.score.mean, 3),
                          f"[{_fmt(r.score.low, 3)}, {_fmt(r.score.high, 3)}]", _fmt(d.mean if d else None, 3),
                          f"[{_fmt(d.low, 3)}, {_fmt(d.high, 3)}]" if d else "", _fmt(r.p_value, 3),
                          _fmt(r.extras.get("test_ece"), 3), _fmt(r.extras.get("noisy_memorized"), 2),
                          str(r.score.n))
        console.print(table)
    _print_diagnostics(diags)
    _print_milestones(marks)


def _html_report(spec_path: Path, store_url: str, html: Path, metric: str | None = None,
                 direction: str | None = None) -> str:
    """The HTML report of SPEC, built before anything is printed or written (a bad PATH, an empty store or
    an unknown `--metric` stops the command with one line and no file)."""
    from losslab.report import ReportData, build_report, check_html_path

    check_html_path(html)
    return build_report(ReportData.load(spec_path, store_url, metric=metric, direction=direction))


def _milestone_arg(text: str) -> tuple[str, float]:
    name, sep, level = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(level)
    except ValueError:
        raise ValueError(f"Expected `--milestone` as METRIC=LEVEL (e.g. test_accuracy=0.99), but got {text!r}.") from None


def _print_diagnostics(diags: dict[tuple[str, str], dict[str, dict[str, float]]]) -> None:
    # One row per series and one column per objective: diagnostics can have dozens of keys
    # (a pruning curve, per-layer values) but a comparison has a handful of objectives.
    for (dataset, condition), objs in diags.items():
        names = sorted({n for v in objs.values() for n in v})
        table = Table(title=f"diagnostics, last value (mean over seeds) · {dataset} · {condition}",
                      title_justify="left")
        table.add_column("diagnostic", no_wrap=True)
        for objective in objs:
            table.add_column(objective, justify="right")
        for n in names:
            table.add_row(n, *(_fmt(values.get(n), 4) for values in objs.values()))
        console.print(table)


def _print_milestones(marks: dict[str, dict[tuple[str, str], dict[str, Any]]]) -> None:
    from losslab.engine.curves import fmt_interval

    for label, groups in marks.items():
        for (dataset, condition), objs in groups.items():
            table = Table(title=f"first epoch with {label.replace('=', ' >= ')} (mean [95% CI] over seeds that "
                                f"reached it) · {dataset} · {condition}", title_justify="left")
            for col in ("objective", "epoch", "reached"):
                table.add_column(col, justify="left" if col == "objective" else "right")
            for objective, m in objs.items():
                table.add_row(objective, fmt_interval(m.epoch), f"{m.reached}/{m.total}")
            console.print(table)


@app.command()
def lmc(
    run_a: str = typer.Argument(..., metavar="RUN_A", help="Run id (or unique prefix)."),
    run_b: str = typer.Argument(..., metavar="RUN_B", help="Run id (or unique prefix)."),
    store_url: str = StoreOpt,
    points: int = typer.Option(11, "--points", min=2, max=1001, help="Points on the path, ends included."),
    metric: str = typer.Option("loss", "--metric", help="loss or error."),
    split: str = typer.Option("test", "--split", help="test or train (as the runs saw it)."),
    layerwise: bool = typer.Option(False, "--layerwise", help="Also move one layer at a time [291]."),
    as_json: bool = JsonOpt,
) -> None:
    """Linear-mode-connectivity barrier between two stored runs of one architecture on one dataset [291]."""
    import torch

    from losslab.diagnostics import lmc_barrier
    from losslab.engine.objective import load_teacher
    from losslab.engine.train import build_data

    with user_errors():
        if metric not in ("loss", "error") or split not in ("test", "train"):
            raise ValueError(f"Expected `--metric` in loss, error and `--split` in test, train, but got "
                             f"{metric!r} and {split!r}.")
        store = _existing_store(store_url)
        if store is None:
            raise ValueError(f"no store at {masked(store_url)}")
        (ida, cfg_a, state_a), (idb, cfg_b, state_b) = (_stored_model(store, r) for r in (run_a, run_b))
        for key in ("dataset", "model"):
            if cfg_a[key] != cfg_b[key]:
                raise ValueError(f"Expected runs {ida} and {idb} to share their {key}, but they differ: "
                                 f"{cfg_a[key]} vs {cfg_b[key]}.")
        data = build_data(cfg_a)
        models = [load_teacher(state, data, torch.device("cpu"), rid)
                  for rid, state in ((ida, state_a), (idb, state_b))]
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        result = lmc_barrier(*models, x, y, points=points, metric=metric, layerwise=layerwise)
    out = {"run_a": ida, "run_b": idb, "metric": metric, "split": split, "barrier": result.barrier,
           "t": result.t.tolist(), "curve": result.curve.tolist(), "layer_barriers": result.layer_barriers}
    if as_json:
        print(json.dumps(out))
        return
    console.print(f"{metric} barrier between {ida} and {idb} on the {split} split: [bold]{result.barrier:.4g}[/]")
    console.print("path: " + "  ".join(f"{t:.2f}:{v:.4g}" for t, v in zip(out["t"], out["curve"])))
    for name, b in result.layer_barriers.items():
        console.print(f"  layer {name}: {b:.4g}")


@app.command()
def soup(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Two or more run ids (or unique prefixes)."),
    store_url: str = StoreOpt,
    val_fraction: float = typer.Option(0.5, "--val-fraction", min=0.05, max=0.95,
                                       help="Share of the test split that ranks and selects ingredients."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the validation/held-out split."),
    as_json: bool = JsonOpt,
) -> None:
    """Uniform and greedy model soups of stored runs of one architecture on one dataset [225].

    The test split is divided once (``--val-fraction``, ``--seed``): the greedy
    soup ranks and accepts ingredients on the validation part, and every model
    is scored on the other, held-out part.
    """
    import torch

    from losslab.diagnostics import greedy_soup, uniform_soup
    from losslab.engine.objective import load_teacher
    from losslab.engine.train import build_data

    with user_errors():
        if len(runs) < 2:
            raise ValueError(f"Expected at least two runs to average, but got {len(runs)}.")
        store = _existing_store(store_url)
        if store is None:
            raise ValueError(f"no store at {masked(store_url)}")
        stored = [_stored_model(store, r) for r in runs]
        ids = [rid for rid, _, _ in stored]
        if len(set(ids)) != len(ids):
            raise ValueError(f"Expected distinct runs, but got {', '.join(ids)}.")
        first = stored[0][1]
        for rid, cfg, _ in stored[1:]:
            for key in ("dataset", "model"):
                if cfg[key] != first[key]:
                    raise ValueError(f"Expected runs {ids[0]} and {rid} to share their {key}, but they differ: "
                                     f"{first[key]} vs {cfg[key]}.")
        data = build_data(first)
        models = [load_teacher(state, data, torch.device("cpu"), rid) for rid, _, state in stored]
        perm = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, min(len(perm) - 1, round(val_fraction * len(perm))))
        val, held = perm[:n_val], perm[n_val:]
        states = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
        result = greedy_soup(states, data.x_test[val], data.y_test[val], model=models[0])
        runner = models[0]  # runs every state in turn, so the states are snapshots taken first

        @torch.no_grad()
        def held_out(state: dict[str, Any]) -> float:
            runner.load_state_dict(state)
            return float((runner(data.x_test[held]).argmax(-1) == data.y_test[held]).double().mean())

        individual = [held_out(state) for state in states]
        out = {"runs": ids, "val_samples": int(n_val), "held_out_samples": int(len(held)),
               "individual": individual, "uniform": held_out(uniform_soup(states)),
               "greedy": held_out(result.state_dict), "greedy_ingredients": [ids[i] for i in result.ingredients]}
    if as_json:
        print(json.dumps(out))
        return
    table = Table(title=f"model soups, accuracy on {out['held_out_samples']} held-out test samples")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    for rid, acc in zip(ids, individual):
        table.add_row(rid, f"{acc:.4f}")
    table.add_row("uniform soup", f"{out['uniform']:.4f}")
    table.add_row(f"greedy soup ({len(result.ingredients)} of {len(ids)})", f"{out['greedy']:.4f}")
    console.print(table)


def _stored_model(store: Store, prefix: str) -> tuple[str, dict[str, Any], bytes]:
    ids = store.find(prefix)
    if len(ids) != 1:
        raise ValueError(f"Expected `{prefix}` to match exactly one stored run, but it matches {len(ids)}.")
    run = store.run(ids[0])
    state = store.checkpoint(ids[0])
    if run["status"] != "done" or state is None:
        raise ValueError(f"Expected run {ids[0]} to be finished with stored weights, but it is {run['status']}"
                         f"{'' if state else ' without weights'}.")
    return ids[0], run["config"], state


@app.command()
def plot(
    spec_path: Path = typer.Argument(..., metavar="SPEC"),
    metric: list[str] = typer.Option(..., "--metric", help="Per-epoch metric or diagnostic series; repeatable."),
    out: Path = typer.Option(..., "--out", help="Image file (.png, .svg or .pdf)."),
    store_url: str = StoreOpt,
    log_x: bool = typer.Option(False, "--log-x", help="Logarithmic epoch axis (grokking curves)."),
) -> None:
    """Plot metrics over epochs for SPEC's finished runs: mean per objective with the min-max band over seeds."""
    from losslab.engine.curves import curves, plot_curves, series

    with user_errors():
        if out.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"Expected `--out` to end in .png, .svg or .pdf, but got {out.name!r}.")
        spec, plan = _plan(spec_path)
        store = _existing_store(store_url)
        if store is None:
            raise ValueError(f"no store at {masked(store_url)}; run the spec first")
        data = series(plan, store)
        plot_curves({m: curves(plan, data, m) for m in metric}, out, log_x=log_x)
    console.print(f"wrote {out}")


@app.command()
def tune(
    spec_path: Path = typer.Argument(..., metavar="SPEC"),
    trials: int = typer.Option(..., "--trials", help="Finished (complete or pruned) trials the study should "
                               "reach, counted over every worker and earlier call."),
    store_url: str = StoreOpt,
    objective: Optional[str] = typer.Option(None, "--objective", help="Objective label to tune (default: the "
                                            "spec's first)."),
    param: list[str] = typer.Option([], "--param", metavar="NAME", help="Tune only these (loss.q, sam.rho, "
                                    "confidence_penalty.weight, train.lr, ...); default: every objective "
                                    "hyper-parameter. Repeatable."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Validation metric (default: the spec's)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="maximize or minimize (default: from "
                                            "the metric)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: SPEC-name:objective)."),
    pruner: str = typer.Option("median", "--pruner", help="median, hyperband or none."),
    validation: float = typer.Option(0.2, "--validation", help="Share of the training split held out to score "
                                     "trials; the test split is never used."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds averaged per trial."),
    sampler_seed: Optional[int] = typer.Option(None, "--sampler-seed", help="Seed of the TPE sampler."),
    as_json: bool = JsonOpt,
) -> None:
    """Tune an objective's hyper-parameters with Optuna; the study lives in the store's database and resumes."""
    from losslab.engine.executor import lease_seconds
    from losslab.tune import tune as run_tune

    with user_errors():
        spec, plan = _plan(spec_path)

        def progress(trial: Any) -> None:
            if not as_json:
                value = "" if trial.value is None else f" {trial.value:.4f}"
                console.print(f"trial {trial.number}: {trial.state.name.lower()}{value} {trial.params}",
                              markup=False, highlight=False)

        result = run_tune(spec, plan, store_url, trials=trials, objective=objective, params=param or None,
                          metric=metric, direction=direction, study_name=study, pruner=pruner,
                          validation=validation, seeds=seeds, sampler_seed=sampler_seed,
                          lease_s=lease_seconds(), on_trial=progress)
    if as_json:
        print(json.dumps(result.as_dict(), default=_json_default))
        return
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items())
    console.print(f"study {result.study}: {counts}", markup=False, highlight=False)
    console.print("search space: " + "; ".join(result.space), markup=False, highlight=False)
    if result.best_value is None:
        console.print("no complete trial yet", markup=False)
    else:
        console.print(f"best: trial {result.best_trial}, validation {result.metric} {result.best_value:.4f}, "
                      f"{result.best_params}", markup=False, highlight=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    raise TypeError(type(obj).__name__)


@app.command()
def export(
    spec_path: Path = typer.Argument(..., metavar="SPEC"),
    out: Path = typer.Option(..., "--out", help="File to write."),
    store_url: str = StoreOpt,
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    table: str = typer.Option("final", "--table", help="final (one row per run) or epochs (long format)."),
) -> None:
    """Write SPEC's finished runs to a CSV or Parquet file."""
    from losslab.engine.export import FORMATS, TABLES, export_rows, write_table

    with user_errors():
        if fmt not in FORMATS:
            raise ValueError(f"Expected `--format` to be one of {', '.join(FORMATS)}, but got {fmt!r}.")
        if table not in TABLES:
            raise ValueError(f"Expected `--table` to be one of {', '.join(TABLES)}, but got {table!r}.")
        spec, plan = _plan(spec_path)
        store = _existing_store(store_url)
        if store is None:
            raise StoreError(f"store {masked(store_url)} does not exist")
        columns, rows = export_rows(plan, store, table)
        write_table(out, columns, rows, fmt)
    console.print(f"wrote {len(rows)} rows of {spec.name} ({table}) to {out}")


@app.command("list")
def list_components(
    kind: Optional[str] = typer.Option(None, "--kind", help=f"One of {', '.join(KINDS)}."),
    as_json: bool = JsonOpt,
) -> None:
    """The registry: every component with its family, paper ids and hyper-parameters."""
    with user_errors():
        if kind is not None and kind not in KINDS:
            raise ValueError(f"Expected `--kind` to be one of {', '.join(KINDS)}, but got {kind!r}.")
        entries = REGISTRY.entries(kind)
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], default=str))
        return
    table = Table(title="losslab registry")
    for col in ("kind", "name", "family", "papers", "hyper-parameters (default, range)", "summary"):
        table.add_column(col)
    for e in entries:
        hyper = "; ".join(f"{k}={h.default} {h.describe()}" for k, h in e.hyper.items())
        papers = ", ".join(f"[{p}]" for p in e.papers) or "—"
        table.add_row(e.kind, e.name, e.family, papers, hyper, e.summary)
    console.print(table)


@app.command()
def show(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="A run id or a unique prefix of one."),
    store_url: str = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One stored run: its config, environment, final metrics and training curve."""
    with user_errors():
        store = _existing_store(store_url)
        if store is None:
            raise StoreError(f"store {masked(store_url)} does not exist")
        matches = store.find(run_id)
        if len(matches) != 1:
            what = "no run" if not matches else f"{len(matches)} runs ({', '.join(matches[:5])})"
            raise ValueError(f"Expected `RUN_ID` to match exactly one stored run, but {what} match {run_id!r}.")
        run = store.run(matches[0])
    if as_json:
        print(json.dumps(run, default=str))
        return
    console.print(f"[bold]{run['run_id']}[/] {run['status']} in {run['duration_s']:.1f}s  {run['labels']}")
    if run["error"]:
        console.print(f"[red]error:[/] {run['error']}", highlight=False)
    console.print_json(json.dumps({"config": run["config"], "conditions": run["records"],
                                   "environment": run["environment"], "final": run["final"]}))
    if run["history"]:
        table = Table(title="training curve")
        cols = list(run["history"][0])
        for c in cols:
            table.add_column(c, justify="right")
        step = max(1, len(run["history"]) // 12)
        for h in run["history"][::step] + ([run["history"][-1]] if (len(run["history"]) - 1) % step else []):
            table.add_row(*[str(h[c]) if c == "epoch" else _fmt(h.get(c)) for c in cols])
        console.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
