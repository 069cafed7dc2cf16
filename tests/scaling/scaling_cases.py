"""Synthetic data from known parameters, one case per registered scaling-law form."""

from __future__ import annotations

import numpy as np

from losslab.scaling import annealing_areas, constant_schedule, cosine_schedule, get_form, wsd_schedule


def _grid2(a, b):
    x, y = np.meshgrid(a, b)
    return x.ravel(), y.ravel()


def _lr_data():
    s1s, s2s, runs = [], [], []
    for run, lr in enumerate((cosine_schedule(4000, 1e-3, warmup=100), wsd_schedule(4000, 1e-3, warmup=100),
                              constant_schedule(4000, 1e-3, warmup=100))):
        s1, s2 = annealing_areas(lr)
        idx = np.arange(200, 4000, 50)
        s1s.append(s1[idx]), s2s.append(s2[idx]), runs.append(np.full(idx.size, run))
    return {"S1": np.concatenate(s1s), "S2": np.concatenate(s2s)}, np.concatenate(runs)


def _mixture_data():
    rng = np.random.default_rng(123)
    h = np.vstack([np.eye(3) * 0.9 + 0.1 / 3, rng.dirichlet(np.full(3, 0.7), 30)])
    n, d = _grid2(np.logspace(7, 9, 3), np.logspace(9, 11, 3))
    rows = np.repeat(np.arange(n.size), h.shape[0])
    hh = np.tile(h, (n.size, 1))
    return {"N": n[rows], "D": d[rows], "h1": hh[:, 0], "h2": hh[:, 1], "h3": hh[:, 2]}


def case(name: str):
    """``(data, true_params, noise, hyper, groups)``: multiplicative log-normal noise (additive for
    linear-space forms) of the given standard deviation."""
    n_c, d_c = _grid2(np.logspace(6, 10, 9), np.logspace(8, 12, 9))
    n_s, d_s = _grid2(np.logspace(8, 10, 5), np.logspace(10, 12, 5))
    c_o, m_o = _grid2(np.logspace(16, 21, 10), np.array([2.0, 5, 10, 20, 40, 80, 160, 320]))
    lr_data, lr_runs = _lr_data()
    cases = {
        "power_law": ({"x": np.logspace(6, 10, 30)}, {"E": 1.8, "A": 400.0, "alpha": 0.34}, 1e-3, {}, None),
        "chinchilla": ({"N": n_c, "D": d_c}, {"E": 1.8, "A": 480.0, "alpha": 0.35, "B": 2000.0, "beta": 0.37},
                       5e-4, {}, None),
        "loss_to_loss": ({"Lx": np.linspace(1.6, 5.0, 60)}, {"K": 1.1, "kappa": 0.5, "E_x": 1.5, "E_y": 1.2},
                         2e-4, {}, None),
        "lr_annealing": (lr_data, {"L0": 2.5, "A": 0.6, "alpha": 0.5, "C": 0.3}, 1e-3, {}, lr_runs),
        "overtraining": ({"C": c_o, "M": m_o}, {"E": 1.7, "a": 150.0, "b": 3000.0, "eta": 0.15}, 1e-3, {}, None),
        "loss_to_error": ({"L": np.linspace(2.0, 5.0, 30)}, {"eps": 0.8, "k": 5.0, "gamma": 1.0}, 1e-3, {}, None),
        "step_law_lr": ({"N": n_s, "D": d_s}, {"c": 1.79, "a": -0.713, "b": 0.307}, 1e-3, {}, None),
        "step_law_batch": ({"D": np.logspace(9, 12, 10)}, {"d": 0.58, "g": 0.571}, 1e-3, {}, None),
        "data_mixture": (_mixture_data(), {"E": 1.5, "A": 300.0, "alpha": 0.3, "B": 800.0, "beta": 0.3,
                                           "C1": 3.0, "C2": 1.5, "C3": 0.8, "gamma1": 0.5, "gamma2": 0.3,
                                           "gamma3": 0.8}, 2e-4, {"domains": 3}, None),
    }
    return cases[name]


def noisy_target(name: str, seed: int = 0):
    data, true, noise, hyper, groups = case(name)
    form = get_form(name, **hyper)
    clean = form.predict(data, true)
    eps = noise * np.random.default_rng(seed).standard_normal(clean.size)
    y = clean + eps if form.space == "linear" else clean * np.exp(eps)
    return data, y, true, hyper, groups


NAMES = ("power_law", "chinchilla", "loss_to_loss", "lr_annealing", "overtraining", "loss_to_error",
         "step_law_lr", "step_law_batch", "data_mixture")


def one_line_error(res, *fragments):
    """A CLI result that exited 2 with one `error:` line on stderr holding every fragment; returns the line."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
