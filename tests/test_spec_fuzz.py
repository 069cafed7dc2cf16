"""Spec fuzzing: every malformed spec exits 2 with one stderr line and writes nothing (issue 8)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from losslab.cli import app
from losslab.core.registry import REGISTRY
from specs import TINY

runner = CliRunner()
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# (path into the spec, values that are wrong there for a stated reason)
WRONG_VALUES = {
    ("train", "lr"): [-1.0, 0.0, "fast", [0.1], None, float("nan")],
    ("train", "epochs"): [0, -3, 1.5, "ten", 10**9],
    ("train", "batch_size"): [0, -1, "big"],
    ("train", "optimizer"): ["adamx", 3, None],
    ("train", "augment"): ["rotate", True],
    ("train", "lr_schedule"): ["linear", 1],
    ("seeds",): [0, -1, [], [1, 1], "three", [-2]],
    ("name",): ["has space", "", 5, "a/b"],
    ("datasets",): [[], "gaussian_mixture", [{"params": {}}]],
    ("objectives",): [[], [{"params": {"q": 0.7}}], [{"name": "ce"}, {"name": "ce"}]],
    ("model",): [None, "mlp", {"name": "mlp", "params": {"width": -4}}, {"name": "mlp", "params": {"depht": 2}}],
    ("metric",): ["test_f1", 1],
}


def _set(spec: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(spec)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def _assert_rejected(tmp_path: Path, text: str) -> None:
    path, db = tmp_path / "fuzz.yaml", tmp_path / "fuzz.db"
    path.write_text(text)
    if db.exists():
        db.unlink()
    res = runner.invoke(app, ["run", str(path), "--store", f"sqlite:///{db}"])
    assert res.exit_code == 2, (text, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), (text, res.stderr)
    assert not db.exists(), text


@FUZZ
@given(st.sampled_from(sorted(WRONG_VALUES)).flatmap(lambda p: st.tuples(st.just(p), st.sampled_from(WRONG_VALUES[p]))))
def test_wrong_types_and_out_of_range_values(tmp_path, case):
    path, value = case
    _assert_rejected(tmp_path, yaml.safe_dump(_set(TINY, path, value)))


NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@FUZZ
@given(NAME, st.sampled_from(["objectives", "datasets", "model", "conditions"]))
def test_unknown_component_names(tmp_path, name, where):
    kind = {"objectives": "loss", "datasets": "dataset", "model": "model", "conditions": "condition"}[where]
    if name in REGISTRY.names(kind) or (kind == "loss" and name in REGISTRY.names("loss")):
        return
    spec = copy.deepcopy(TINY)
    if where == "model":
        spec["model"] = {"name": name}
    elif where == "conditions":
        spec["conditions"] = [{"name": name}]
    else:
        spec[where] = [{"name": name}]
    _assert_rejected(tmp_path, yaml.safe_dump(spec))


def test_unknown_names_get_a_did_you_mean(tmp_path):
    spec = _set(TINY, ("objectives",), [{"name": "gcee"}])
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = runner.invoke(app, ["run", str(path), "--store", f"sqlite:///{tmp_path}/x.db"])
    assert res.exit_code == 2 and "Did you mean 'gce'" in res.stderr


@FUZZ
@given(NAME, st.sampled_from([(), ("train",), ("model",), ("objectives", 0)]))
def test_unknown_keys(tmp_path, key, where):
    spec = copy.deepcopy(TINY)
    node = spec
    for k in where:
        node = node[k]
    if key in node or (where == () and key in ("description", "reference", "diagnostics", "conditions")):
        return
    if where in ((), ("train",)) and key in {"metric", "seeds", "eval_every", "device", "momentum",
                                            "weight_decay", "warmup_epochs", "augment", "lr_schedule"}:
        return
    if where == ("model",) and key in ("params", "sweep", "label"):
        return
    if where == ("objectives", 0) and key in {"params", "sweep", "label", "weight", "regularizers", "distill",
                                               "mixing", "optimizer", "train", "loss", "name"}:
        return
    node[key] = 1
    _assert_rejected(tmp_path, yaml.safe_dump(spec))


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_valid_spec_or_one_line(tmp_path, text):
    _assert_rejected(tmp_path, text)  # no random text is a complete, valid spec


@FUZZ
@given(st.integers(0, 400), st.sampled_from(["{", "[", ": :", "\t", "'", "- ", "&a *b"]))
def test_broken_yaml_of_a_real_spec(tmp_path, cut, junk):
    text = yaml.safe_dump(TINY)
    _assert_rejected(tmp_path, text[:cut] + junk + text[cut:cut + 3])
