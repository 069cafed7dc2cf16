"""The vectorized executor: packs train to the sequential executor's results, member by member."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from losslab.cli import app
from losslab.engine.executor import execute
from losslab.engine.packing import Pack, plan_packs
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.stacked import StackedMLP, StackedOptimizer
from losslab.engine.store import Store
from losslab.engine.train import build_data, build_model
from losslab.engine.vmap import train_pack
from specs import TINY, write_spec

# Observed: bit-identical on CPU (MLP, SGD/Adam/AdamW, per-sample losses); asserted with a margin for BLAS builds.
RTOL, ATOL = 1e-6, 1e-9

GRID = {
    "name": "grid",
    "datasets": [{"name": "mnist1d", "params": {"num_samples": 600}}],  # 480 train: batches of 100 and one of 80
    "model": {"name": "mlp"},
    "conditions": [{"name": "symmetric_noise", "params": {"rate": 0.2}}],
    "objectives": [
        {"label": "ce", "name": "ce", "train": {"lr": 0.01}},
        {"label": "ls", "name": "label_smoothing", "params": {"epsilon": 0.1},
         "train": {"lr": 0.003, "weight_decay": 1e-4}},
    ],
    "seeds": 4,
    "train": {"optimizer": "adam", "batch_size": 100, "epochs": 3},
}


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The final linear probe (scipy L-BFGS) runs 10x slower on BLAS threads that a loaded machine shares."""
    with threadpool_limits(1):
        yield


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


def _state(blob: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(blob), weights_only=True)["state"]


def _assert_same_runs(seq: Store, vec: Store, run_ids: list[str]) -> None:
    for rid in run_ids:
        a, b = seq.run(rid), vec.run(rid)
        assert (a["status"], a["error"]) == (b["status"], b["error"]), rid
        assert a["records"] == b["records"]
        assert a["final"].keys() == b["final"].keys() and (a["final"] or a["status"] == "failed"), rid
        bad = {k: (a["final"][k], b["final"][k]) for k in a["final"] if not _close(a["final"][k], b["final"][k])}
        assert not bad, (rid, bad)
        assert [h["epoch"] for h in a["history"]] == [h["epoch"] for h in b["history"]]
        for ha, hb in zip(a["history"], b["history"]):
            assert ha.keys() == hb.keys()
            assert all(_close(ha[k], hb[k]) for k in ha), (rid, ha, hb)
        if a["status"] == "done":
            sa, sb = _state(seq.checkpoint(rid)), _state(vec.checkpoint(rid))
            assert all(torch.allclose(sa[k], sb[k], rtol=RTOL, atol=ATOL) for k in sa), rid


def test_a_pack_stores_what_the_sequential_executor_stores(tmp_path):
    """4 seeds x 2 (loss, lr, weight decay) on noisy MNIST-1D: every final metric, epoch row and weight agrees."""
    plan = make_plan(parse_spec(GRID))
    packing = plan_packs(plan)
    assert [len(p.members) for p in packing.packs] == [8] and not packing.alone
    seq, vec = Store(f"sqlite:///{tmp_path}/seq.db"), Store(f"sqlite:///{tmp_path}/vec.db")
    assert execute(plan, seq).done == 8
    summary = execute(plan, vec, packs=packing.packs)
    assert (summary.done, summary.failed) == (8, 0)
    _assert_same_runs(seq, vec, [r.run_id for r in plan])
    assert {vec.run(r.run_id)["environment"]["pack_size"] for r in plan} == {8}


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_stacked_optimizer_is_torch_optim_per_member(kind):
    """Three groups (different lr, weight decay, momentum) over 12 steps: each member equals torch.optim on its own."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (7,), (3, 7)]
    hyper = [{"lr": 0.05, "weight_decay": 0.1, "momentum": 0.9}] * 2 + [
        {"lr": 0.2, "weight_decay": 0.0, "momentum": 0.0}, {"lr": 0.01, "weight_decay": 0.01, "momentum": 0.5}]
    init = [torch.randn(4, *s, generator=gen) for s in shapes]
    grads = [[torch.randn(4, *s, generator=gen) for s in shapes] for _ in range(12)]
    stacked = [p.clone().requires_grad_() for p in init]
    opt = StackedOptimizer(kind, stacked, [(0, 2, hyper[0]), (2, 3, hyper[2]), (3, 4, hyper[3])])
    for g in grads:
        for p, gp in zip(stacked, g):
            p.grad = gp.clone()
        opt.step([hyper[0]["lr"], hyper[2]["lr"], hyper[3]["lr"]])
    for k, h in enumerate(hyper):
        own = [p[k].clone().requires_grad_() for p in init]
        ref = {"sgd": lambda: torch.optim.SGD(own, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"]),
               "adam": lambda: torch.optim.Adam(own, lr=h["lr"], weight_decay=h["weight_decay"]),
               "adamw": lambda: torch.optim.AdamW(own, lr=h["lr"], weight_decay=h["weight_decay"])}[kind]()
        for g in grads:
            for p, gp in zip(own, g):
                p.grad = gp[k].clone()
            ref.step()
        assert all(torch.equal(a.detach(), b[k].detach()) for a, b in zip(own, stacked)), (kind, k)


def test_stacked_mlp_gradients_equal_each_members_own():
    """The hand-batched MLP's logits and gradients are each member's own (residual layers included)."""
    data = build_data(make_plan(parse_spec(GRID))[0].config)
    models = [build_model({"model": {"name": "mlp", "params": {"depth": 3, "residual": True}}, "seed": s}, data)
              for s in range(3)]
    stacked = StackedMLP(models)
    x = torch.randn(3, 17, 40, generator=torch.Generator().manual_seed(1))
    logits = stacked.forward(x)
    (logits ** 2).sum().backward()
    for k, m in enumerate(models):
        (m(x[k]) ** 2).sum().backward()
        assert torch.equal(m(x[k]), logits[k])
        pairs = zip(m.parameters(), stacked.params)
        assert all(torch.allclose(p.grad, s.grad[k], rtol=RTOL, atol=ATOL) for p, s in pairs)


def test_a_diverging_member_fails_alone_with_the_sequential_error(tmp_path):
    """SGD at lr 10 blows up (some seeds); each such member fails as sequentially, the others train on unchanged."""
    spec = copy.deepcopy(GRID)
    spec["objectives"] = [{"label": "ok", "name": "ce", "train": {"lr": 0.01}},
                          {"label": "boom", "name": "ce", "train": {"lr": 10.0}}]
    spec["seeds"], spec["train"] = 2, {"optimizer": "sgd", "momentum": 0.9, "batch_size": 100, "epochs": 3}
    plan = make_plan(parse_spec(spec))
    seq, vec = Store(f"sqlite:///{tmp_path}/seq.db"), Store(f"sqlite:///{tmp_path}/vec.db")
    reference = execute(plan, seq)
    assert reference.failed >= 1 and reference.done >= 2  # the grid must diverge somewhere, not everywhere
    summary = execute(plan, vec, packs=plan_packs(plan).packs)
    assert (summary.done, summary.failed) == (reference.done, reference.failed)
    failed = [r.run_id for r in plan if vec.run(r.run_id)["status"] == "failed"]
    assert all("training diverged: non-finite loss at epoch" in vec.run(r)["error"] for r in failed)
    _assert_same_runs(seq, vec, [r.run_id for r in plan])  # the same error text, and the same history before it


def test_the_packer_leaves_what_it_does_not_understand_sequential():
    spec = copy.deepcopy(TINY)
    spec["conditions"], spec["seeds"] = [], 2
    spec["objectives"] = [
        {"name": "ce"},
        {"label": "sam", "name": "ce", "optimizer": {"name": "sam"}},
        {"label": "reg", "name": "ce", "regularizers": [{"name": "confidence_penalty", "weight": 0.1}]},
        {"name": "kl_dro"},
        {"label": "sgd", "name": "ce", "train": {"optimizer": "sgd"}},
        {"label": "one", "name": "ce", "train": {"epochs": 2}},
    ]
    spec["seeds"] = 2
    plan = make_plan(parse_spec(spec))
    one = [r for r in plan if r.objective == "one"]
    plan = [r for r in plan if r not in one[1:]]  # one seed only: alone in its pack
    packing = plan_packs(plan)
    sizes = sorted(len(p.members) for p in packing.packs)
    assert sizes == [2, 2]  # ce, and sgd (a different optimizer kind packs on its own)
    why = {r.objective: reason for r, reason in packing.alone}
    assert why == {"sam": "optimizer wrapper", "reg": "regularizers", "kl_dro": "loss 'kl_dro' (batch)",
                   "one": "no other run to pack with"}
    line = packing.describe()
    assert line.startswith("4 of 11 runs train vectorized in 2 pack(s)") and "2: optimizer wrapper" in line


def test_a_member_claimed_elsewhere_is_left_to_its_holder(tmp_path):
    """Claims come first: a member another process holds is not trained by the pack, and is taken over on expiry."""
    spec = copy.deepcopy(TINY)
    spec["conditions"], spec["objectives"], spec["seeds"] = [], [{"name": "ce"}], 3
    plan = make_plan(parse_spec(spec))
    store = Store(f"sqlite:///{tmp_path}/c.db")
    held = plan[0].run_id
    assert store.claim(held, "someone-else", 0.5)
    summary = execute(plan, store, packs=plan_packs(plan).packs, lease_s=0.5)
    assert summary.done == 3 and store.claim_holders() == {}
    env = {r.run_id: store.run(r.run_id)["environment"] for r in plan}
    assert "executor" not in env[held]  # taken over after the lease expired, on the sequential path
    assert [env[r.run_id]["pack_size"] for r in plan[1:]] == [2, 2]


def test_a_pack_that_cannot_train_falls_back_to_the_sequential_path(tmp_path, monkeypatch):
    import losslab.engine.vmap as vmap

    def broken(pack: Pack) -> None:
        raise RuntimeError("no")

    monkeypatch.setattr(vmap, "train_pack", broken)
    spec = copy.deepcopy(TINY)
    spec["conditions"], spec["objectives"] = [], [{"name": "ce"}]
    plan = make_plan(parse_spec(spec))
    store = Store(f"sqlite:///{tmp_path}/f.db")
    with pytest.warns(RuntimeWarning, match="training them sequentially"):
        summary = execute(plan, store, packs=plan_packs(plan).packs)
    assert summary.done == 2


def test_the_generic_vmap_route_matches_a_cnn(tmp_path):
    """A model other than the MLP (the MNIST-1D CNN) trains through vmap(functional_call) to the same results."""
    spec = copy.deepcopy(GRID)
    spec["model"], spec["seeds"], spec["train"]["epochs"] = {"name": "mnist1d_cnn", "params": {"channels": 8}}, 2, 2
    spec["objectives"] = spec["objectives"][:1]
    plan = make_plan(parse_spec(spec))
    packing = plan_packs(plan)
    assert len(packing.packs) == 1
    results = {r.run_id: r for r in train_pack(packing.packs[0])}
    seq = Store(f"sqlite:///{tmp_path}/s.db")
    execute(plan, seq)
    for rid, res in results.items():
        ref = seq.run(rid)["final"]
        assert all(math.isclose(ref[k], res.final[k], rel_tol=1e-4, abs_tol=1e-6) for k in ref), (ref, res.final)


def test_cli_executor_choice(tmp_path):
    runner = CliRunner()
    path = write_spec(tmp_path / "tiny.yaml", TINY)
    res = runner.invoke(app, ["run", str(path), "--store", f"sqlite:///{tmp_path}/x.db", "--executor", "gpu"])
    assert res.exit_code == 2 and "auto, local, vmap, ray" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()
    out = {}
    for kind in ("vmap", "local"):
        res = runner.invoke(app, ["run", str(path), "--store", f"sqlite:///{tmp_path}/{kind}.db", "--executor", kind])
        assert res.exit_code == 0, res.output
        out[kind] = res.output
    assert "executor vmap: 8 of 8 runs train vectorized in 1 pack(s) (8)." in " ".join(out["vmap"].split())
    assert "executor" not in out["local"].split("worker(s).")[1].split("done")[0]
    ids = [r.run_id for r in make_plan(parse_spec(TINY))]
    _assert_same_runs(Store(f"sqlite:///{tmp_path}/local.db"), Store(f"sqlite:///{tmp_path}/vmap.db"), ids)


def test_plan_packs_validates_max_pack():
    with pytest.raises(ValueError, match="max_pack"):
        plan_packs([], max_pack=1)
