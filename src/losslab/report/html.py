"""The page: one self-contained HTML document (inline CSS, figures as ``data:`` URIs), written atomically.

The document declares a Content-Security-Policy that allows nothing but inline
styles and ``data:`` images, so a browser opening it makes no request at all,
and a stray external reference would show up as a broken element rather than a
silent fetch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import losslab
from losslab.report.data import ReportData
from losslab.report.markup import esc
from losslab.report.sections import Section, SectionFn

SUFFIXES = (".html", ".htm")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --ink:#1d2125; --muted:#5f6b76; --line:#e3e7eb; --soft:#f5f7f9; --accent:#2457a6;
        --good:#1a7f37; --bad:#b42318; --hi:#fff7d6; }
* { box-sizing:border-box; }
html { -webkit-text-size-adjust:100%; }
body { margin:0; color:var(--ink); background:#fff; font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,
       "Helvetica Neue",Arial,"Noto Sans",sans-serif; }
.page { max-width:1180px; margin:0 auto; padding:28px 32px 64px; }
header.top { border-bottom:1px solid var(--line); padding-bottom:18px; margin-bottom:8px; }
.kicker { text-transform:uppercase; letter-spacing:.08em; font-size:12px; color:var(--muted); font-weight:600; }
h1 { font-size:30px; line-height:1.2; margin:4px 0 6px; letter-spacing:-.01em; }
h2 { font-size:22px; margin:0 0 4px; letter-spacing:-.005em; }
h3 { font-size:15.5px; margin:26px 0 8px; color:#2b3137; }
p.desc { margin:0 0 14px; color:#39424b; font-size:16px; max-width:80ch; }
p.setup { margin:-6px 0 14px; color:var(--muted); font-size:14px; overflow-wrap:anywhere; }
dl.facts { display:grid; grid-template-columns:repeat(auto-fit,minmax(150px,1fr)); gap:10px 18px; margin:0; }
dl.facts div { background:var(--soft); border:1px solid var(--line); border-radius:8px; padding:8px 12px; }
dl.facts dt { font-size:11.5px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); }
dl.facts dd { margin:2px 0 0; font-weight:600; font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
nav.toc { margin:16px 0 0; display:flex; flex-wrap:wrap; gap:6px 8px; }
nav.toc a { color:var(--accent); text-decoration:none; border:1px solid #c9d6ea; border-radius:999px;
            padding:3px 12px; font-size:13.5px; background:#f4f8fd; }
section { padding:26px 0 10px; border-bottom:1px solid var(--line); }
section:last-of-type { border-bottom:0; }
p.lead { margin:0 0 14px; color:var(--muted); max-width:95ch; }
p.note { color:var(--muted); font-size:13.5px; margin:6px 0; }
figure { margin:12px 0 18px; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { font-size:13px; color:var(--muted); margin-top:6px; max-width:110ch; }
.table-wrap { overflow-x:auto; }
table { border-collapse:collapse; font-size:13.5px; font-variant-numeric:tabular-nums; margin:4px 0 10px; }
caption { caption-side:bottom; text-align:left; font-size:12.5px; color:var(--muted); padding-top:4px; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
thead th { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted);
           border-bottom:2px solid #cfd6dc; background:#fafbfc; }
td.obj, th:first-child, td:first-child { text-align:left; }
table.leaderboard td.rank { color:var(--muted); width:2.5em; }
table.leaderboard td.obj { font-weight:600; min-width:12em; }
table.leaderboard tr.best td { background:var(--hi); }
table.leaderboard tr.ref td.obj::after { content:"reference"; font-size:10.5px; font-weight:600; color:var(--muted);
           border:1px solid var(--line); border-radius:4px; padding:0 5px; margin-left:8px; }
td.sig-better { color:var(--good); font-weight:600; }
td.sig-worse { color:var(--bad); font-weight:600; }
td.ci { color:#46505a; }
table.glance td.names { text-align:left; font-weight:500; white-space:normal; overflow-wrap:anywhere; min-width:12em; }
table.glance td.obj { font-weight:600; }
table.glance td.cell { white-space:normal; max-width:30em; }
.cols { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:0 40px; }
table.kv th { text-align:left; color:#39424b; font-weight:600; width:16em; }
table.kv td { text-align:left; white-space:normal; overflow-wrap:anywhere; }
table.kv thead { display:none; }
table.kv tr.differs td, table.kv tr.differs th { background:var(--hi); }
table.runs td, table.runs th { font-size:12.5px; text-align:left; }
table.runs tr.failed td { color:var(--bad); }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:7px; vertical-align:0; }
.count { color:var(--muted); }
details { margin:18px 0; }
summary { cursor:pointer; color:var(--accent); font-weight:600; }
pre.spec { background:#0f1720; color:#e6edf3; padding:14px 16px; border-radius:8px; overflow-x:auto;
           font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace; }
code { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace; font-size:.92em; }
p.meta { color:var(--muted); font-size:13px; }
footer { margin-top:30px; color:var(--muted); font-size:12.5px; }
@media print { .page { max-width:none; padding:0; } nav.toc { display:none; } section { break-inside:avoid-page; }
               details { display:none; } }
"""


def render(data: ReportData, sections: list[SectionFn]) -> str:
    """The whole document: a header with the key facts and contents, then every non-empty section."""
    built = [s for s in (fn(data) for fn in sections) if s is not None]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="generator" content="losslab {esc(losslab.__version__)}">'
            f"<title>{esc(data.spec.name)} · losslab report</title><style>{CSS}</style></head>"
            f'<body><div class="page">{_header(data, built)}<main>{"".join(_section(s) for s in built)}</main>'
            f"{_footer(data)}</div></body></html>\n")


def _header(data: ReportData, built: list[Section]) -> str:
    seeds = sorted({r.seed for r in data.plan})
    datasets = list(dict.fromkeys(g[0] for g in data.groups))
    facts = [("metric", f"{data.metric} {'↑' if data.higher_is_better else '↓'}"),
             ("reference", data.reference),
             ("runs finished", f"{len(data.finals)} / {len(data.plan)}"),
             ("objectives", str(len(data.objectives))),
             ("conditions", str(len({g[1] for g in data.groups}))),
             ("seeds", f"{len(seeds)} ({_ranges(seeds)})")]
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    toc = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in built)
    desc = f'<p class="desc">{esc(data.spec.description)}</p>' if data.spec.description else ""
    model = data.plan[0].config["model"]
    params = ",".join(f"{k}={v}" for k, v in sorted(model["params"].items()))
    desc += (f'<p class="setup">{"dataset" if len(datasets) == 1 else "datasets"} '
             f'{", ".join(f"<code>{esc(d)}</code>" for d in datasets)} · model '
             f'<code>{esc(model["name"])}{f"({esc(params)})" if params else ""}</code></p>')
    return (f'<header class="top"><div class="kicker">losslab report · '
            f'{esc(data.generated_at.strftime("%Y-%m-%d %H:%M UTC"))}</div><h1>{esc(data.spec.name)}</h1>{desc}'
            f'<dl class="facts">{dl}</dl><nav class="toc">{toc}</nav></header>')


def _ranges(xs: list[int]) -> str:
    """``0-2, 5`` for seeds 0, 1, 2, 5."""
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}–{xs[j]}")
        i = j + 1
    return ", ".join(out)


def _section(s: Section) -> str:
    lead = f'<p class="lead">{s.lead}</p>' if s.lead else ""
    return f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{lead}{s.body}</section>'


def _footer(data: ReportData) -> str:
    return (f"<footer>Written by losslab {esc(losslab.__version__)} from store <code>{esc(data.safe_store_url)}</code>"
            f" and spec <code>{esc(data.spec_path.name)}</code>. Self-contained: this file loads nothing."
            f"</footer>")


def check_html_path(path: Path) -> Path:
    """``path`` if a report can be written there: an .html/.htm file name in an existing, writable folder."""
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"Expected `--html` to end in {' or '.join(SUFFIXES)}, but got {path.name!r}.")
    if path.is_dir():
        raise ValueError(f"Expected `--html` to be a file, but {str(path)!r} is a directory.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"Expected `--html` in an existing directory, but {str(parent)!r} does not exist.")
    if not _writable(parent) or (path.exists() and not _writable(path)):
        raise ValueError(f"Expected `--html` to be writable, but {str(path)!r} is not writable (permission denied).")
    return path


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


def write_html(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace`` (never a half-written page)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a report meant for sharing private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
