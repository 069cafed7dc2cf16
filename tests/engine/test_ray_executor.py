"""The Ray executor stores what the local executor stores, bit for bit, and refuses a bad address in seconds.

CI (``.ci/run``) starts a real cluster with ``ray start --head`` on loopback and
exports its address as ``LOSSLAB_TEST_RAY_ADDRESS``; elsewhere the module starts
a local cluster once. Without Ray installed the module is skipped, except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import socket
import threading
import time

import pytest
import torch

from losslab.engine.executor import execute
from losslab.engine.packing import Member, Pack, plan_packs
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.store import Store
from specs import TINY

if importlib.util.find_spec("ray") is None and os.environ.get("CI") != "true":
    pytest.skip("Ray is not installed (pip install 'losslab[ray]')", allow_module_level=True)

from losslab.engine.ray_executor import check_address, execute_ray, ray_session, spread  # noqa: E402

ADDRESS = os.environ.get("LOSSLAB_TEST_RAY_ADDRESS") or None
KD = {"label": "kd", "loss": {"name": "ce", "weight": 0.5},
      "distill": {"name": "kd", "weight": 0.5, "teacher": {"objective": "ce"}}}


def _grid() -> dict:
    """2 objectives x 2 seeds (they pack: one task), and a distilled student of each seed's CE run."""
    spec = copy.deepcopy(TINY)
    spec["conditions"] = [{"name": "symmetric_noise", "params": {"rate": 0.2}}]
    spec["objectives"] = [{"name": "ce"}, {"name": "gce", "params": {"q": 0.7}}, KD]
    spec["train"]["epochs"] = 2
    return spec


@pytest.fixture(scope="module")
def cluster():
    """One Ray session for the module (CI's cluster, or a local one started here): startup costs seconds."""
    t0 = time.perf_counter()
    with ray_session(ADDRESS) as ray:
        print(f"ray session ({ADDRESS or 'local'}) up in {time.perf_counter() - t0:.1f} s")
        yield ray


def _state(blob: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(blob), weights_only=True)["state"]


def _assert_equal_stores(a: Store, b: Store, run_ids: list[str]) -> None:
    """Every final metric, epoch row and weight of each run is identical (==, not close)."""
    assert a.epoch_rows(run_ids) == b.epoch_rows(run_ids)
    for rid in run_ids:
        ra, rb = a.run(rid), b.run(rid)
        assert (ra["status"], ra["error"]) == (rb["status"], rb["error"]) == ("done", None), rid
        assert ra["final"] == rb["final"] and ra["final"], rid
        assert ra["history"] == rb["history"], rid
        sa, sb = _state(a.checkpoint(rid)), _state(b.checkpoint(rid))
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), rid


def test_ray_stores_the_local_executors_results(cluster, one_thread, tmp_path):
    """Local (in-process, 1 thread) vs Ray (1 CPU per task), with and without packs: identical stores.

    The students (KD from each seed's CE run) must wait for their teachers, which
    train inside the packed task in the packed case. Then a run another writer has
    claimed is waited for until its lease expires, and trained once. (One test, so
    that ``-n 2`` starts one Ray session and one set of Ray workers, not two.)
    """
    plan = make_plan(parse_spec(_grid()))
    ids = [r.run_id for r in plan]
    packing = plan_packs(plan)
    assert [len(p.members) for p in packing.packs] == [4] and len(packing.alone) == 2
    local, ray_runs, ray_packs = (Store(f"sqlite:///{tmp_path}/{n}.db") for n in ("local", "ray", "packs"))

    t0 = time.perf_counter()
    assert execute(plan, local).done == 6
    t_local = time.perf_counter() - t0
    seen = []
    t0 = time.perf_counter()
    summary = execute_ray(plan, ray_runs, address=ADDRESS, on_result=lambda r, stored: seen.append(r.run_id))
    t_ray = time.perf_counter() - t0
    assert (summary.done, summary.failed, summary.skipped) == (6, 0, 0) and sorted(seen) == sorted(ids)
    students = {r.run_id: r.depends for r in plan if r.depends}
    assert len(students) == 2 and all(seen.index(t) < seen.index(s) for s, ts in students.items() for t in ts)
    _assert_equal_stores(local, ray_runs, ids)

    summary = execute_ray(plan, ray_packs, address=ADDRESS, packs=packing.packs)
    assert (summary.done, summary.failed) == (6, 0)
    _assert_equal_stores(local, ray_packs, ids)
    envs = [ray_packs.run(r)["environment"] for r in ids]
    assert sorted(e["executor"] for e in envs) == ["ray"] * 2 + ["ray+vmap"] * 4
    cpus = int(cluster.cluster_resources()["CPU"])  # 2 or more CPUs: the pack of 4 trains as two of 2
    assert sorted(e.get("pack_size", 0) for e in envs) == [0, 0] + [2 if cpus >= 2 else 4] * 4
    assert {e["torch_threads"] for e in envs} == {1}
    print(f"grid of 6 runs: local {t_local:.2f} s, ray {t_ray:.2f} s (cold workers)")

    teachers = [r for r in plan if not r.depends]
    claimed = Store(f"sqlite:///{tmp_path}/claimed.db")
    assert claimed.claim(teachers[0].run_id, "someone-else", 1.5)
    summary = execute_ray(teachers, claimed, address=ADDRESS, lease_s=1.0)
    assert (summary.done, summary.failed, summary.skipped, summary.by_others) == (4, 0, 0, 0)
    assert claimed.count("runs") == 4 and not claimed.claim_holders()
    _assert_equal_stores(local, claimed, [r.run_id for r in teachers])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["closed", "silent", "http"])
def test_an_unreachable_address_is_one_line_within_seconds(kind, tmp_path):
    """Ray itself retries an unreachable GCS for minutes; losslab says so in one line, in < 10 s, writing nothing."""
    server = None
    if kind == "closed":
        address = f"127.0.0.1:{_closed_port()}"
    else:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        if kind == "http":  # answers, but HTTP/1.1, as a web server on a wrong port would
            def answer():
                conn, _ = server.accept()
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.close()
            threading.Thread(target=answer, daemon=True).start()
    store = Store(f"sqlite:///{tmp_path}/none.db")
    plan = make_plan(parse_spec({**_grid(), "objectives": [{"name": "ce"}], "seeds": 1}))
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            execute_ray(plan, store, address=address)
    finally:
        if server is not None:
            server.close()
    elapsed = time.perf_counter() - t0
    message = str(info.value)
    assert elapsed < 10, elapsed
    assert "`--address`" in message and address in message and "\n" not in message, message
    assert store.count("runs") == 0 and not store.claim_holders()


@pytest.mark.parametrize("address", ["", "nohost", "host:port", "host:0", "a:b:c", "ray://", "[::1]"])
def test_a_malformed_address_names_the_forms(address):
    with pytest.raises(ValueError, match=r"`--address`"):
        check_address(address)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cpus_per_run": 0}, "--cpus-per-run"), ({"cpus_per_run": True}, "--cpus-per-run"),
    ({"gpus_per_run": -1}, "--gpus-per-run"), ({"gpus_per_run": float("nan")}, "--gpus-per-run"),
])
def test_bad_resource_requests_are_refused_before_ray_starts(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        execute_ray([], Store(f"sqlite:///{tmp_path}/s.db"), address="127.0.0.1:1", **kwargs)


def test_cuda_runs_without_gpus_are_refused(tmp_path):
    spec = {**_grid(), "objectives": [{"name": "ce"}], "seeds": 1}
    spec["train"] = {**spec["train"], "device": "cuda"}
    plan = make_plan(parse_spec(spec))
    with pytest.raises(ValueError, match="--gpus-per-run"):
        execute_ray(plan, Store(f"sqlite:///{tmp_path}/s.db"), address="127.0.0.1:1")


@pytest.mark.parametrize(("sizes", "slots", "expected"), [
    ([64], 4, [16, 16, 16, 16]), ([5, 3], 4, [3, 2, 3]), ([4], 1, [4]), ([3, 2], 8, [3, 2]), ([], 4, []),
])
def test_spread_halves_the_largest_packs_to_fill_the_cluster(sizes, slots, expected):
    """Every run stays in exactly one pack, in order; no pack drops below 2 members."""
    plan = make_plan(parse_spec({**_grid(), "objectives": [{"name": "ce"}], "seeds": sum(sizes) or 1}))
    packs, start = [], 0
    for n in sizes:
        packs.append(Pack([Member(r, None) for r in plan[start:start + n]]))
        start += n
    out = spread(packs, slots)
    assert sorted(len(p.members) for p in out) == sorted(expected)
    assert sorted(r.run_id for p in out for r in p.runs) == sorted(r.run_id for p in packs for r in p.runs)
