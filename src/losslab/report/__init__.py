"""The HTML report: one self-contained page of a spec's results (``losslab report SPEC --html PATH``).

    data = ReportData.load("examples/noisy-labels.yaml", "sqlite:///results/noisy-labels.db")
    write_html(Path("report.html"), build_report(data))

The page is a list of sections (:mod:`losslab.report.sections`), each a function
of :class:`ReportData` returning a :class:`Section` or None. Another part of
losslab adds its own with ``build_report(data, extra=(my_section,))``.
"""

from __future__ import annotations

from losslab.report.data import ReportData
from losslab.report.html import check_html_path, render, write_html
from losslab.report.sections import Section, SectionFn, default_sections


def build_report(data: ReportData, *, extra: tuple[SectionFn, ...] = ()) -> str:
    """The report document for ``data``: the default sections, the scaling-law fit when the spec has a
    ``scaling:`` block, and ``extra`` ones, before the environment."""
    from losslab.report.scaling import scaling_fit

    return render(data, default_sections((scaling_fit, *extra)))


__all__ = ["ReportData", "Section", "SectionFn", "build_report", "check_html_path", "default_sections", "write_html"]
