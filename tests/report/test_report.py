"""`losslab report --html`: the page's sections, its self-containment, its numbers, and its error paths."""

from __future__ import annotations

import html as htmllib
import json
import math
import os
import re
from html.parser import HTMLParser

import pytest
import yaml
from typer.testing import CliRunner

from losslab.cli import app
from losslab.engine.plan import make_plan, reference_label
from losslab.engine.spec import RANKING_METRICS, load_spec
from losslab.engine.stats import summarize
from losslab.engine.store import Store
from losslab.report import ReportData, Section, default_sections, write_html
from losslab.report.html import render
from losslab.report.sections import environment

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


class _Page(HTMLParser):
    """Section ids, image sources, every src/href value, and the leaderboard cells by (group, objective)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections, self.images, self.links, self.toc = [], [], [], []
        self.board: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._h3, self._in_h3, self._board, self._row, self._cells = "", False, False, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.links.append(a[key])
        if tag == "section":
            self.sections.append(a["id"])
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.toc.append(a["href"][1:])
        if tag == "h3":
            self._in_h3, self._h3 = True, ""
        if tag == "table":
            self._board = "leaderboard" in (a.get("class") or "").split()
        if tag == "tr" and self._board and "data-objective" in a:
            self._row, self._cells = a["data-objective"], []
        if tag == "td" and self._row is not None:
            self._cells.append(a)

    def handle_endtag(self, tag):
        if tag == "h3":
            self._in_h3 = False
        if tag == "tr" and self._row is not None:
            names = ("rank", "objective", "mean", "ci", "delta", "delta_ci", "p", "ece", "mem", "n")
            self.board[(self._h3, self._row)] = dict(zip(names, self._cells))
            self._row = None

    def handle_data(self, data):
        if self._in_h3:
            self._h3 += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_page_has_every_section_and_figure(report_html):
    path, _ = report_html
    page = _parse(path.read_text())
    assert page.sections == ["leaderboard", "comparisons", "reliability", "curves", "diagnostics", "environment"]
    assert page.toc == page.sections  # the contents list links exactly the sections shown
    # leaderboard 1, CD diagram 1 + a pairwise matrix per cell 2, reliability 2, curves >= 4, diagnostics 2
    assert len(page.images) >= 12
    assert all(src.startswith("data:image/png;base64,") for src in page.images)


def test_page_is_self_contained(report_html):
    text = report_html[0].read_text()
    page = _parse(text)
    assert page.links and all(v.startswith(("data:", "#")) for v in page.links), page.links
    assert not re.search(r"url\(\s*['\"]?(?!data:)", text)  # no CSS fetches either
    assert "http://" not in text and "https://" not in text
    assert "default-src 'none'" in text  # and the browser is told to load nothing


def test_leaderboard_numbers_equal_stats(report_store, report_html):
    spec_path, url = report_store
    spec = load_spec(spec_path)
    plan = make_plan(spec)
    store = Store(url, create=False)
    rows = summarize(plan, store.final_metrics(r.run_id for r in plan), metric=spec.metric,
                     higher_is_better=RANKING_METRICS[spec.metric], reference=reference_label(spec, plan))
    board = _parse(report_html[0].read_text()).board
    title = ReportData.load(spec_path, url).cell_title
    assert len(board) == len(rows) == 6  # 3 objectives x 2 conditions

    def value(cell, key="data-value"):
        return math.nan if cell[key] == "" else float(cell[key])

    for r in rows:
        cells = board[(title((r.dataset, r.condition)), r.objective)]
        assert value(cells["mean"]) == r.score.mean
        assert (value(cells["ci"], "data-low"), value(cells["ci"], "data-high")) == (r.score.low, r.score.high)
        if r.delta is None:
            assert r.objective == "ce"
        else:
            assert value(cells["delta"]) == r.delta.mean
            assert value(cells["delta_ci"], "data-low") == r.delta.low
        assert value(cells["p"]) == r.p_value or (math.isnan(r.p_value) and math.isnan(value(cells["p"])))
        assert value(cells["ece"]) == r.extras["test_ece"]


def test_terminal_output_is_kept(report_store, report_html):
    spec, url = report_store
    plain = _invoke("report", spec, "--store", url)
    assert plain.exit_code == 0
    assert report_html[1] == plain.stdout  # --html adds a file, not a word to stdout


def test_spec_and_environment_are_on_the_page(report_store, report_html):
    import torch

    spec, url = report_store
    text = report_html[0].read_text()
    assert htmllib.escape(spec.read_text(), quote=True) in text
    assert torch.__version__ in text
    assert all(r.run_id in text for r in make_plan(load_spec(spec)))


@pytest.mark.parametrize("name, why", [
    ("missing/report.html", "does not exist"),
    ("report.png", "end in .html or .htm"),
    ("folder.html", "is a directory"),
])
def test_bad_html_path_is_one_line_and_writes_nothing(report_store, tmp_path, name, why):
    spec, url = report_store
    (tmp_path / "folder.html").mkdir()
    res = _invoke("report", spec, "--store", url, "--html", tmp_path / name)
    assert res.exit_code == 2
    assert res.stdout == ""  # stopped before the terminal table too
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "`--html`" in lines[0] and why in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.html"]


def test_unwritable_folder_is_refused(report_store, tmp_path, monkeypatch):
    spec, url = report_store
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes through directory permissions: deny it the way the kernel would
        monkeypatch.setattr("losslab.report.html._writable", lambda _: False)
    res = _invoke("report", spec, "--store", url, "--html", locked / "r.html")
    assert res.exit_code == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "`--html`" in res.stderr and "not writable" in res.stderr
    assert not list(locked.iterdir())


def test_no_finished_runs_is_one_line_and_no_file(report_store, tmp_path):
    spec, url = report_store
    other = yaml.safe_load(spec.read_text()) | {"seeds": [7]}  # a plan none of whose runs are stored
    other_spec = tmp_path / "other.yaml"
    other_spec.write_text(yaml.safe_dump(other))
    for store in (url, f"sqlite:///{tmp_path}/absent.db"):
        res = _invoke("report", other_spec, "--store", store, "--html", tmp_path / "r.html")
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and "nothing was written" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.yaml"]


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old report")
    write_html(target, "<p>new</p>")
    assert target.read_text() == "<p>new</p>" and oct(target.stat().st_mode & 0o777) == "0o644"

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("losslab.report.html.os.replace", fail)
    with pytest.raises(OSError):
        write_html(target, "<p>newer</p>")
    assert target.read_text() == "<p>new</p>"  # the old page stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # and no temporary file is left behind


def test_a_new_section_is_one_function(report_store):
    data = ReportData.load(*report_store)

    def scaling(d: ReportData) -> Section:
        return Section("scaling", "Scaling-law fits", f"<p>{len(d.finals)} runs</p>")

    sections = default_sections((scaling,))
    assert sections[-2:] == [scaling, environment]  # placed before the environment, which closes the page
    page = _parse(render(data, [scaling, lambda d: None, environment]))
    assert page.sections == page.toc == ["scaling", "environment"]  # a None section leaves no trace


def test_store_password_is_masked(report_store):
    data = ReportData.load(*report_store)
    data.store_url = "postgresql://lab:s3cret@db.example:5432/runs"
    assert "s3cret" not in data.safe_store_url and "***" in data.safe_store_url


def test_per_level_diagnostics_are_drawn_over_their_levels(report_store):
    """quantized_accuracy's acc@8bit ... acc@2bit become one curve over bits per cell, not five panels over epochs."""
    from losslab.report.sections import diagnostics

    data = ReportData.load(*report_store)
    body = diagnostics(data).body
    cells = body.count("<h3>")
    assert cells == len(data.groups) == 2
    # per cell: one figure of the series over epochs (gradsign, quantized_accuracy.dense / .min_bits) and one
    # of the per-level family over its levels
    assert body.count("<figure>") == 2 * cells
    for bits in (8, 6, 4, 3, 2):  # the table still lists every level's last value, one row each
        assert body.count(f"<td class=\"obj\">quantized_accuracy.acc@{bits}bit</td>") == cells


def test_metric_override_ranks_the_page_like_the_terminal(report_store, tmp_path):
    """`report --metric SERIES --html`: the page's leaderboard is the terminal's ranking of that series."""
    spec, url = report_store
    key = "quantized_accuracy.acc@2bit"
    page = tmp_path / "m.html"
    res = CliRunner().invoke(app, ["report", str(spec), "--store", url, "--metric", key, "--html", str(page)])
    assert res.exit_code == 0, res.output
    terminal = json.loads(CliRunner().invoke(app, ["report", str(spec), "--store", url, "--metric", key,
                                                   "--json"]).stdout)
    data = ReportData.load(spec, url, metric=key)
    assert data.metric == key and data.higher_is_better
    mine = [(r.condition, r.objective, r.rank, r.score.mean, r.score.n) for r in data.rows]
    assert mine == [(r["condition"], r["objective"], r["rank"], r["score"]["mean"], r["score"]["n"])
                    for r in terminal["rows"]]
    assert f"{key} (higher is better)" in page.read_text()
    bad = tmp_path / "bad.html"
    res = CliRunner().invoke(app, ["report", str(spec), "--store", url, "--metric", "nope", "--html", str(bad)])
    assert res.exit_code == 2 and not bad.exists()
