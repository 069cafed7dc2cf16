"""One registry for every component: losses, regularizers, distillation terms, mixing schemes,
optimizer wrappers, metrics, datasets, conditions, models and scaling forms.

The CLI (`losslab list`), the spec validation and the docs all read this one
source. An entry carries the component's name, kind, family, paper ids from
``shared/reference/papers.md``, and its hyper-parameters with type, default and
valid range. Components register themselves with :func:`register` when their
module is imported; :func:`load_all` imports every catalog module.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from losslab.core.validation import check_choice, check_number, fail, interval_str

KINDS = ("loss", "regularizer", "distill", "mixing", "optimizer", "metric", "diagnostic", "dataset", "condition",
         "model", "scaling")

# Modules whose import registers components; `load_all` imports them.
CATALOG_MODULES = (
    "losslab.losses",
    "losslab.regularizers",
    "losslab.distill",
    "losslab.mixing",
    "losslab.optim",
    "losslab.diagnostics",
    "losslab.metrics",
    "losslab.data",
    "losslab.models",
    "losslab.scaling",
)


@dataclass(frozen=True)
class Hyper:
    """A hyper-parameter: its type, default and valid range (or choices)."""

    type: str  # "float" | "int" | "bool" | "choice" | "str" | "strs"
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def validate(self, name: str, value: Any) -> Any:
        """Return ``value`` coerced to the declared type, or raise ``ValueError``."""
        if self.type == "bool":
            if not isinstance(value, bool):  # 1 == True in Python; a flag must be a real bool
                fail(name, "true or false", repr(value))
            return value
        if self.type == "choice":
            return check_choice(value, name, self.choices or ())
        if self.type == "str":
            if not isinstance(value, str) or not value:
                fail(name, "a non-empty string", repr(value))
            return value
        if self.type == "strs":
            # one string is shorthand for a list of one (a single feature column, a single glob)
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) and v for v in items):
                fail(name, "a non-empty string or a non-empty list of non-empty strings", repr(value))
            return list(items)
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        return check_number(
            value,
            name,
            low=self.low,
            high=self.high,
            low_open=self.low_open,
            high_open=self.high_open,
            integer=self.type == "int",
        )

    def describe(self) -> str:
        if self.type == "str":
            return "str"
        if self.type == "strs":
            return "str or list of str"
        if self.type in ("bool", "choice"):
            opts = self.choices if self.type == "choice" else (True, False)
            return f"{self.type} in {{{', '.join(map(str, opts))}}}"
        return f"{self.type} in {interval_str(self.low, self.high, self.low_open, self.high_open)}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "default": self.default, "range": self.describe(), "doc": self.doc}


def real(default: float, low: float | None = None, high: float | None = None, *,
         low_open: bool = False, high_open: bool = False, doc: str = "") -> Hyper:
    return Hyper("float", default, low, high, low_open, high_open, None, doc)


def integer(default: int, low: int | None = None, high: int | None = None, *, doc: str = "") -> Hyper:
    return Hyper("int", default, low, high, False, False, None, doc)


def flag(default: bool, *, doc: str = "") -> Hyper:
    return Hyper("bool", default, doc=doc)


def choice(default: Any, choices: tuple[Any, ...], *, doc: str = "") -> Hyper:
    return Hyper("choice", default, choices=tuple(choices), doc=doc)


def text(default: str | None = None, *, doc: str = "") -> Hyper:
    """A string hyper-parameter (a path, a column name); ``None`` as default makes it optional."""
    return Hyper("str", default, doc=doc)


def texts(default: list[str] | None = None, *, doc: str = "") -> Hyper:
    """A list of strings (column names, glob patterns); a lone string is accepted as a list of one."""
    return Hyper("strs", default, doc=doc)


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    family: str
    obj: Callable[..., Any]
    papers: tuple[int, ...] = ()
    hyper: Mapping[str, Hyper] = field(default_factory=dict)
    module: type | None = None
    reference: str = ""
    tags: frozenset[str] = frozenset()

    @property
    def summary(self) -> str:
        doc = (self.obj.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def resolve(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Fill defaults and validate ``params``; unknown names get a did-you-mean."""
        params = dict(params or {})
        for key in params:
            if key not in self.hyper:
                known = sorted(self.hyper)
                hint = difflib.get_close_matches(key, known, n=1)
                extra = f" Did you mean {hint[0]!r}?" if hint else ""
                valid = ", ".join(known) if known else "none"
                raise ValueError(
                    f"Unknown hyper-parameter {key!r} for {self.kind} {self.name!r}; valid: {valid}.{extra}"
                )
        out = {}
        for key, spec in self.hyper.items():
            value = params.get(key, spec.default)
            # A hyper-parameter whose default is None is optional: None stays None.
            optional_unset = value is None and spec.default is None
            out[key] = None if optional_unset else spec.validate(f"{self.name}.{key}", value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "family": self.family,
            "papers": list(self.papers),
            "reference": self.reference,
            "summary": self.summary,
            "tags": sorted(self.tags),
            "hyper": {k: v.to_dict() for k, v in self.hyper.items()},
        }


class Registry:
    """Entries keyed by ``(kind, name)``."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}

    def add(self, entry: Entry) -> Entry:
        check_choice(entry.kind, "kind", KINDS)
        key = (entry.kind, entry.name)
        if key in self._entries and self._entries[key].obj is not entry.obj:
            raise ValueError(f"Duplicate registry entry: {entry.kind} {entry.name!r} is already registered.")
        if not entry.papers and not entry.reference:
            raise ValueError(f"Registry entry {entry.kind} {entry.name!r} needs paper ids or a reference.")
        self._entries[key] = entry
        return entry

    def remove(self, kind: str, name: str) -> Entry | None:
        """Drop ``(kind, name)`` and return its entry (None if absent).

        For components a user adds at run time and may redefine (datasets passed in
        from Python); catalog modules never remove each other's entries.
        """
        check_choice(kind, "kind", KINDS)
        return self._entries.pop((kind, name), None)

    def get(self, kind: str, name: str) -> Entry:
        check_choice(kind, "kind", KINDS)
        load_all()
        try:
            return self._entries[(kind, name)]
        except KeyError:
            known = self.names(kind)
            hint = difflib.get_close_matches(str(name), known, n=1)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(
                f"Unknown {kind} {name!r}.{extra} Valid: {', '.join(known)}."
            ) from None

    def names(self, kind: str) -> list[str]:
        load_all()
        return sorted(n for k, n in self._entries if k == kind)

    def entries(self, kind: str | None = None) -> list[Entry]:
        load_all()
        return [e for (k, _), e in sorted(self._entries.items()) if kind is None or k == kind]


REGISTRY = Registry()


def register(
    kind: str,
    name: str,
    *,
    family: str,
    papers: tuple[int, ...] = (),
    hyper: Mapping[str, Hyper] | None = None,
    module: type | None = None,
    reference: str = "",
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` under ``(kind, name)`` and return it unchanged."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.add(
            Entry(kind, name, family, fn, tuple(papers), dict(hyper or {}), module, reference, frozenset(tags))
        )
        return fn

    return deco


def twin(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: attach an ``nn.Module`` twin to the already registered ``(kind, name)``."""

    def deco(cls: type) -> type:
        key = (kind, name)
        REGISTRY._entries[key] = dataclasses.replace(REGISTRY._entries[key], module=cls)
        return cls

    return deco


_loaded = False


def load_all() -> None:
    """Import every catalog module once so the registry is complete."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in CATALOG_MODULES:
        importlib.import_module(mod)
