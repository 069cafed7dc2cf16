"""LR schedules and the S1/S2 areas of the LR-annealing law [273]."""

from __future__ import annotations

import numpy as np
import pytest

from losslab.scaling import annealing_areas, constant_schedule, cosine_schedule, wsd_schedule


def _loop(lr, decay):
    """Reference: the recursion written out step by step."""
    s1 = s2 = m = 0.0
    out1, out2 = [], []
    for i, eta in enumerate(lr):
        prev = lr[i - 1] if i else eta
        m = decay * m + (prev - eta)
        s1, s2 = s1 + eta, s2 + m
        out1.append(s1), out2.append(s2)
    return np.array(out1), np.array(out2)


@pytest.mark.parametrize("lr", [cosine_schedule(300, 3e-4, warmup=20), wsd_schedule(300, 1e-3, final=1e-5),
                                constant_schedule(50, 0.1)])
def test_areas_match_the_recursion(lr):
    s1, s2 = annealing_areas(lr, decay=0.99)
    r1, r2 = _loop(lr, 0.99)
    np.testing.assert_allclose(s1, r1, rtol=1e-12)
    np.testing.assert_allclose(s2, r2, rtol=1e-10, atol=1e-15)


def test_constant_lr_has_no_annealing_area_and_decay_zero_sums_drops():
    _, s2 = annealing_areas(constant_schedule(100, 1e-3))
    assert np.all(s2 == 0)
    lr = wsd_schedule(100, 1.0, decay_fraction=0.5)
    _, s2 = annealing_areas(lr, decay=0.0)
    np.testing.assert_allclose(s2, 1.0 - lr)  # m_i is the one-step drop; S2 the total drop so far


def test_schedules_shapes_and_endpoints():
    for lr in (constant_schedule(10, 2.0, warmup=3), cosine_schedule(10, 2.0, final=0.2, warmup=3),
               wsd_schedule(10, 2.0, warmup=3)):
        assert lr.shape == (10,) and lr[2] == pytest.approx(2.0) and lr[0] == pytest.approx(2.0 / 3)
    assert cosine_schedule(10, 2.0, final=0.2)[-1] == pytest.approx(0.2)
    assert wsd_schedule(10, 2.0, decay_fraction=0.3)[-1] == 0.0 and wsd_schedule(10, 2.0)[7] == 2.0


@pytest.mark.parametrize("call, arg", [
    (lambda: annealing_areas([]), "`lr`"),
    (lambda: annealing_areas([1.0, -1.0]), "`lr`"),
    (lambda: annealing_areas([1.0], decay=1.0), "`decay`"),
    (lambda: cosine_schedule(0, 1.0), "`steps`"),
    (lambda: wsd_schedule(10, 1.0, warmup=10), "`warmup`"),
    (lambda: cosine_schedule(10, 1.0, final=2.0), "`final`"),
])
def test_bad_arguments(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


# ----------------------------------------------------------------------------- the engine's schedules
ENGINE_CASES = [
    {"lr": 0.1, "epochs": 5},
    {"lr": 0.1, "epochs": 5, "warmup_epochs": 1},
    {"lr": 0.1, "epochs": 5, "lr_schedule": "cosine", "warmup_epochs": 1},
    {"lr": 0.1, "epochs": 5, "lr_schedule": "wsd", "warmup_epochs": 1, "decay_fraction": 0.4},
    {"lr": 0.1, "epochs": 5, "lr_schedule": "wsd"},
]


@pytest.mark.parametrize("train", ENGINE_CASES)
def test_engine_lr_schedule_is_the_shared_definition(train):
    import torch

    from losslab.engine.train import LRSchedule
    from losslab.scaling.lr_schedule import training_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train["lr"])
    schedule, seen = LRSchedule(opt, train, steps_per_epoch=7), []
    for step in range(35):
        schedule.at(step)
        seen.append(opt.param_groups[0]["lr"])
    np.testing.assert_array_equal(seen, training_schedule(train, 7))


def test_cosine_and_wsd_follow_their_formulas():
    from losslab.scaling.lr_schedule import training_schedule

    t = np.arange(40)
    cos = training_schedule({"lr": 2.0, "epochs": 4, "lr_schedule": "cosine", "warmup_epochs": 1}, 10)
    np.testing.assert_allclose(cos[:10], 2.0 * (t[:10] + 1) / 10)
    np.testing.assert_allclose(cos[10:], 1.0 + np.cos(np.pi * (t[10:] - 10) / 30), rtol=1e-12)
    wsd = training_schedule({"lr": 2.0, "epochs": 4, "lr_schedule": "wsd", "decay_fraction": 0.25}, 10)
    np.testing.assert_array_equal(wsd[:30], 2.0)  # stable until the last 10 steps
    np.testing.assert_allclose(wsd[30:], 2.0 * (40 - t[30:]) / 10)  # linear to lr / D at the last step
    s1, s2 = annealing_areas(wsd, decay=0.9)
    assert s2[29] == 0 and np.all(np.diff(s2[30:]) > 0)  # annealing area grows only while decaying


def test_training_schedule_rejects_bad_settings():
    from losslab.scaling.lr_schedule import training_schedule

    with pytest.raises(ValueError, match="lr_schedule"):
        training_schedule({"lr": 1.0, "epochs": 2, "lr_schedule": "step"}, 3)
    with pytest.raises(ValueError, match="warmup_epochs"):
        training_schedule({"lr": 1.0, "epochs": 2, "warmup_epochs": 2}, 3)
    with pytest.raises(ValueError, match="train"):
        training_schedule({"epochs": 2}, 3)


def test_spec_wsd_fields_keep_old_ids_and_validate():
    from losslab.engine.plan import make_plan
    from losslab.engine.spec import SpecError, parse_spec

    base = {"name": "s", "datasets": [{"name": "mnist1d", "params": {"num_samples": 100}}],
            "model": {"name": "mlp"}, "objectives": [{"name": "ce"}], "seeds": 1, "train": {"epochs": 5}}
    plain = make_plan(parse_spec(base))[0]
    explicit = make_plan(parse_spec({**base, "train": {"epochs": 5, "decay_fraction": 0.2}}))[0]
    assert plain.run_id == explicit.run_id and "decay_fraction" not in plain.config["train"]
    cosine = {"epochs": 5, "lr_schedule": "cosine", "warmup_epochs": 4}  # a long warm-up is no wsd overlap
    assert make_plan(parse_spec({**base, "train": cosine}))[0].config["train"]["warmup_epochs"] == 4
    wsd = make_plan(parse_spec({**base, "train": {"epochs": 5, "lr_schedule": "wsd", "decay_fraction": 0.4}}))[0]
    assert wsd.config["train"]["decay_fraction"] == 0.4 and wsd.run_id != plain.run_id
    for train, where in [({"epochs": 5, "decay_fraction": 0.5}, "only to lr_schedule 'wsd'"),
                         ({"epochs": 5, "lr_schedule": "wsd", "decay_fraction": 0.0}, "train.decay_fraction"),
                         ({"epochs": 5, "lr_schedule": "wsd", "warmup_epochs": 3, "decay_fraction": 0.6},
                          "overlaps the warm-up")]:
        with pytest.raises(SpecError, match=where) as err:
            parse_spec({**base, "train": train})
        assert "\n" not in str(err.value)
