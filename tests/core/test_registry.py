from __future__ import annotations

import re
from pathlib import Path

import pytest

from losslab.core.registry import KINDS, REGISTRY, Entry, Registry, choice, flag, integer, real

PAPERS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "papers.md"


def test_every_kind_is_populated_and_every_entry_is_cited():
    for kind in KINDS:
        assert REGISTRY.names(kind), f"no {kind} registered"
    for e in REGISTRY.entries():
        assert e.papers or e.reference, f"{e.kind} {e.name} has neither paper ids nor a reference"
        assert e.summary, f"{e.kind} {e.name} has no docstring summary"


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/reference/papers.md is not beside the checkout")
def test_paper_ids_exist_in_the_reference_list():
    known = {int(m) for m in re.findall(r"^## \[(\d+)\]", PAPERS.read_text(), re.M)}
    for e in REGISTRY.entries():
        assert set(e.papers) <= known, f"{e.kind} {e.name} cites unknown paper ids {set(e.papers) - known}"


def test_get_gives_did_you_mean_and_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown loss 'focla'\. Did you mean 'focal'\? Valid: .*ce"):
        REGISTRY.get("loss", "focla")
    with pytest.raises(ValueError, match="`kind`"):
        REGISTRY.get("losses", "ce")


def test_resolve_fills_defaults_and_checks_ranges():
    entry = REGISTRY.get("loss", "gce")
    assert entry.resolve({}) == {"q": 0.7}
    assert entry.resolve({"q": 1}) == {"q": 1.0}
    with pytest.raises(ValueError, match=r"gce\.q.*\(0, 1\]"):
        entry.resolve({"q": 0.0})
    with pytest.raises(ValueError, match="Did you mean 'q'"):
        entry.resolve({"qq": 0.5})
    with pytest.raises(ValueError, match="a number"):
        entry.resolve({"q": "0.5"})


@pytest.mark.parametrize(
    "hyper, good, bad",
    [
        (real(1.0, 0.0, 2.0), [0.0, 2.0, 1], [-0.1, 2.1, float("nan"), True]),
        (real(1.0, 0.0, None, low_open=True), [1e-9, 1e9], [0.0, float("inf")]),
        (integer(3, 1, 5), [1, 5, 3.0], [0, 6, 2.5]),
        (flag(True), [True, False], [1, "yes"]),
        (choice("a", ("a", "b")), ["a", "b"], ["c", None]),
    ],
)
def test_hyper_validate(hyper, good, bad):
    for v in good:
        hyper.validate("h", v)
    for v in bad:
        with pytest.raises(ValueError, match="`h`"):
            hyper.validate("h", v)


def test_registry_rejects_duplicates_and_uncited_entries():
    reg = Registry()
    reg.add(Entry("loss", "x", "f", print, papers=(5,)))
    with pytest.raises(ValueError, match="Duplicate"):
        reg.add(Entry("loss", "x", "f", len, papers=(5,)))
    with pytest.raises(ValueError, match="paper ids or a reference"):
        reg.add(Entry("loss", "y", "f", len))


def test_text_and_texts_hypers_validate_and_describe():
    from losslab.core.registry import Entry, text, texts

    e = Entry("dataset", "t", "x", lambda **k: None, reference="r",
              hyper={"path": text(doc="file"), "cols": texts(None), "opt": text(None)})
    got = e.resolve({"path": "a.csv", "cols": "x*"})
    assert got == {"path": "a.csv", "cols": ["x*"], "opt": None}
    assert e.resolve({"path": "a", "cols": ["a", "b"]})["cols"] == ["a", "b"]
    for bad in ({"path": ""}, {"path": 3}, {"path": "a", "cols": []}, {"path": "a", "cols": ["a", 1]}):
        with pytest.raises(ValueError, match=r"t\.(path|cols)"):
            e.resolve(bad)
    assert e.hyper["path"].describe() == "str" and "list" in e.hyper["cols"].describe()
