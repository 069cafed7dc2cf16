"""Small HTML builders: every text that reaches the page goes through :func:`esc`.

Numbers in tables carry their full-precision value in ``data-value`` next to the
rounded text, so a reader (or a test) can recover exactly what was computed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from losslab.report.figures import Image


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(x: float | None, digits: int = 3) -> str:
    """As the terminal report prints it: fixed digits, an em dash for a missing value."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def num(x: float | None, digits: int = 3, *, cls: str = "") -> str:
    """A numeric table cell: rounded text, the exact value in ``data-value`` (empty when missing)."""
    value = "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<td data-value="{value}"{klass}>{esc(fmt(x, digits))}</td>'


def interval(low: float | None, high: float | None, digits: int = 3, *, cls: str = "") -> str:
    """An ``[low, high]`` cell; both ends in ``data-low`` / ``data-high``."""
    if low is None or math.isnan(low):
        return f'<td class="ci {esc(cls)}" data-low="" data-high="">—</td>'
    return (f'<td class="ci {esc(cls)}" data-low="{low!r}" data-high="{high!r}">'
            f'[{esc(fmt(low, digits))}, {esc(fmt(high, digits))}]</td>')


def table(head: Sequence[str], rows: Iterable[str], *, cls: str = "", caption: str = "") -> str:
    """``rows`` are ready ``<tr>`` strings; ``head`` is escaped here."""
    cap = f"<caption>{caption}</caption>" if caption else ""
    ths = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<div class="table-wrap"><table class="{esc(cls)}">{cap}<thead><tr>{ths}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def figure(img: Image, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure><img src="{img.uri}" alt="{esc(img.alt)}" width="{img.width}" height="{img.height}" '
            f'loading="eager">{cap}</figure>')


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{esc(color)}"></span>'
