"""Search spaces come from the registry's declared ranges, and every proposal is a value the component accepts."""

from __future__ import annotations

import optuna
import pytest

from losslab.core.registry import REGISTRY
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.tune import apply, search_space, select
from specs import TINY

COMPOSED = {**TINY, "objectives": [
    {"label": "c", "loss": {"name": "gce", "params": {"q": 0.5}},
     "regularizers": [{"name": "confidence_penalty", "weight": 0.1}],
     "mixing": {"name": "mixup", "params": {"alpha": 0.4}}, "optimizer": {"name": "sam"}}]}


def _config(spec):
    return make_plan(parse_spec(spec))[0].config


def test_every_part_of_a_composed_objective_is_searched_within_its_declared_range():
    dims = {d.name: d for d in search_space(_config(COMPOSED))}
    assert {"loss.q", "confidence_penalty.beta", "confidence_penalty.weight", "mixup.alpha", "sam.rho",
            "train.lr", "train.weight_decay"} <= dims.keys()
    q = REGISTRY.get("loss", "gce").hyper["q"]  # (0, 1]: 300 decades on a log scale, so two around the spec's 0.5
    assert dims["loss.q"].log and dims["loss.q"].low == pytest.approx(0.005) and dims["loss.q"].high == q.high
    assert dims["mixup.alpha"].low > 0  # never the open end itself
    assert dims["sam.adaptive"].kind == "categorical" and dims["sam.adaptive"].choices == (False, True)
    assert dims["confidence_penalty.weight"].log and dims["confidence_penalty.weight"].low == pytest.approx(1e-3)
    assert "confidence_penalty.threshold" not in dims  # an unset optional number is not searched


def test_sampled_values_are_accepted_by_every_component():
    config = _config(COMPOSED)
    dims = select(search_space(config), None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        trial = study.ask()
        values = {d.name: d.suggest(trial) for d in dims}
        obj = apply(config, values, dims)["objective"]
        REGISTRY.get("loss", "gce").resolve(obj["params"])
        REGISTRY.get("regularizer", "confidence_penalty").resolve(obj["regularizers"][0]["params"])
        REGISTRY.get("mixing", "mixup").resolve(obj["mixing"]["params"])
        REGISTRY.get("optimizer", "sam").resolve(obj["optimizer"]["params"])
        assert obj["regularizers"][0]["weight"] > 0
        study.tell(trial, 0.0)


def test_apply_writes_values_and_leaves_the_input_untouched():
    config = _config(COMPOSED)
    dims = [d for d in search_space(config) if d.name in ("loss.q", "train.lr", "mixup.alpha")]
    out = apply(config, {"loss.q": 0.9, "train.lr": 0.5, "mixup.alpha": 2.0}, dims)
    assert out["objective"]["params"]["q"] == 0.9 and out["train"]["lr"] == 0.5
    assert out["objective"]["mixing"]["params"]["alpha"] == 2.0
    assert config["objective"]["params"]["q"] == 0.5 and config["train"]["lr"] == TINY["train"]["lr"]


def test_select_defaults_to_the_objective_and_names_unknown_params():
    dims = search_space(_config(COMPOSED))
    assert all(not d.name.startswith("train.") for d in select(dims, None))
    assert [d.name for d in select(dims, ["train.lr", "loss.q"])] == ["train.lr", "loss.q"]
    with pytest.raises(ValueError, match=r"`--param`.*loss\.q"):
        select(dims, ["loss.qq"])


def test_ce_has_nothing_to_tune_but_the_train_settings():
    dims = search_space(_config({**TINY, "objectives": [{"name": "ce"}]}))
    with pytest.raises(ValueError, match="`--param`.*train.lr"):
        select(dims, None)
    assert [d.name for d in select(dims, ["train.lr"])] == ["train.lr"]
