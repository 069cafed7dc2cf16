"""Safe arithmetic over CSV columns, for ``losslab scaling fit --col VAR=EXPR``.

An expression is numbers, column names, ``+ - * / **`` and parentheses; there
are no functions, attributes or calls, and nothing is passed to ``eval``.
Column names may contain spaces and appear verbatim (``Training FLOP/(6*Model
Size)``): the expression is first scanned for the longest header name that
starts at each token boundary, those are replaced by placeholders, and the rest
is parsed with :mod:`ast` and evaluated node by node with NumPy. A name with
characters that would be ambiguous can be written between backticks.
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
           ast.Pow: np.power}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}
_LEFTOVER = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*(?:\s+[A-Za-z_][\w.]*)*")
_MAX_LEN = 1000


class Table:
    """Named numeric columns read lazily from a CSV file's text cells."""

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence[str]], source: str = "CSV") -> None:
        self.header = tuple(header)
        self._rows = rows
        self._cache: dict[str, np.ndarray] = {}
        self.source = source

    def __len__(self) -> int:
        return len(self._rows)

    def valid(self) -> str:
        return ", ".join(repr(h) for h in self.header)

    def column(self, name: str) -> np.ndarray:
        """The column as floats; a non-numeric cell is a one-line ``ValueError``."""
        if name not in self._cache:
            j = self.header.index(name)
            out = np.empty(len(self._rows))
            for i, row in enumerate(self._rows):
                cell = row[j].strip() if j < len(row) else ""
                try:
                    out[i] = float(cell)
                except ValueError:
                    raise ValueError(f"Expected column {name!r} of {self.source} to be numeric, but row {i + 2} "
                                     f"holds {cell!r}.") from None
            self._cache[name] = out
        return self._cache[name]


class Columns(Table):
    """Named columns given as values (floats, or text that an expression may not use).

    ``lazy`` maps further column names to zero-argument functions computed on
    first use (e.g. a parameter count that needs the model built). A column with
    a missing value (``None`` or NaN) or a text value is a one-line ``ValueError``
    when an expression reads it, naming the column.
    """

    def __init__(self, columns: Mapping[str, Sequence[object]], n: int, source: str = "runs",
                 lazy: Mapping[str, Callable[[], Sequence[object]]] | None = None) -> None:
        super().__init__(sorted({*columns, *(lazy or {})}), [], source)
        self._values, self._lazy, self._n = dict(columns), dict(lazy or {}), n

    def __len__(self) -> int:
        return self._n

    def column(self, name: str) -> np.ndarray:
        if name not in self._cache:
            values = self._values[name] if name in self._values else self._lazy[name]()
            text = next((v for v in values if isinstance(v, str)), None)
            if text is not None:
                raise ValueError(f"Expected column {name!r} of {self.source} to be numeric, but it holds {text!r}.")
            out = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
            if np.isnan(out).any():
                raise ValueError(f"Expected column {name!r} of {self.source} to have a value for every row, but "
                                 f"{int(np.isnan(out).sum())} of {out.size} have none.")
            self._cache[name] = out
        return self._cache[name]


def read_csv(path: str | Path) -> Table:
    """Read a CSV with a header row into a :class:`Table`.

    Raises:
        ValueError: if the file is missing, unreadable, empty or has no data rows.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"Expected `CSV` to be a readable CSV file, but {p} gave: {exc}".replace("\n", " ")) from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise ValueError(f"Expected `CSV` to have a header row and data rows, but {p} has {len(rows)} row(s).")
    return Table([h.strip() for h in rows[0]], rows[1:], source=p.name)


def _glued(ch: str) -> bool:
    """Whether ``ch`` would continue an identifier or number (so a name cannot start or end next to it)."""
    return ch.isalnum() or ch in "_."


def _boundary_before(expr: str, i: int) -> bool:
    return i == 0 or not _glued(expr[i - 1])


def _boundary_after(expr: str, i: int) -> bool:
    return i >= len(expr) or not _glued(expr[i])


def _substitute(expr: str, table: Table) -> tuple[str, dict[str, str]]:
    """Replace column names by placeholders ``__c0__``, ``__c1__``, ...; longest name first."""
    names = sorted((h for h in table.header if h), key=len, reverse=True)
    out, slots, i = [], {}, 0

    def slot(name: str) -> str:
        return slots.setdefault(name, f"__c{len(slots)}__")

    while i < len(expr):
        if expr[i] == "`":
            j = expr.find("`", i + 1)
            name = expr[i + 1 : j] if j > 0 else expr[i + 1 :]
            if j < 0 or name not in table.header:
                raise ValueError(f"Unknown column {name!r} in {expr!r}; valid columns: {table.valid()}.")
            out.append(slot(name))
            i = j + 1
            continue
        match = _boundary_before(expr, i) and next(
            (n for n in names if expr.startswith(n, i) and _boundary_after(expr, i + len(n))), None)
        if match:
            out.append(slot(match))
            i += len(match)
        else:
            out.append(expr[i])
            i += 1
    return "".join(out), {v: k for k, v in slots.items()}


def _eval(node: ast.AST, cols: Mapping[str, np.ndarray], expr: str) -> np.ndarray | float:
    if isinstance(node, ast.Expression):
        return _eval(node.body, cols, expr)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, cols, expr), _eval(node.right, cols, expr))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, cols, expr))
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return np.float64(node.value)
    if isinstance(node, ast.Name) and node.id in cols:
        return cols[node.id]
    raise ValueError(f"Expected {expr!r} to use only numbers, column names, + - * / ** and parentheses, "
                     f"but it contains {type(node).__name__}.")


def evaluate(expr: str, table: Table) -> np.ndarray:
    """Evaluate an arithmetic expression over the columns of ``table``.

    Args:
        expr: e.g. ``"Model Size"`` or ``"Training FLOP/(6*Model Size)"``.
        table: the CSV's columns.

    Returns:
        A float array of shape ``(len(table),)``.

    Raises:
        ValueError: one line naming an unknown column (with the valid ones), a
            syntax error, or a disallowed construct.

    Example:
        >>> t = Table(["Model Size", "Training FLOP"], [["2", "24"], ["4", "96"]])
        >>> evaluate("Training FLOP/(6*Model Size)", t).tolist()
        [2.0, 4.0]
    """
    if not expr.strip() or len(expr) > _MAX_LEN:
        raise ValueError(f"Expected an expression of 1 to {_MAX_LEN} characters, but got {expr!r}.")
    text, names = _substitute(expr, table)
    unknown = [m.group(0) for m in _LEFTOVER.finditer(re.sub(r"__c\d+__", "0", text))]
    if unknown:
        raise ValueError(f"Unknown column {unknown[0]!r} in {expr!r}; valid columns: {table.valid()}.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"Could not parse {expr!r} as arithmetic over columns; valid columns: "
                         f"{table.valid()}.") from None
    with np.errstate(all="ignore"):
        value = _eval(tree, {slot: table.column(name) for slot, name in names.items()}, expr)
    return np.broadcast_to(np.asarray(value, dtype=float), (len(table),)).copy()
