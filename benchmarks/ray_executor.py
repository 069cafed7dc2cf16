"""The Ray executor's overhead on a small grid, against the local executor, and whether it stores the same numbers.

The grid is the test's (``tests/engine/test_ray_executor.py``): TINY's Gaussian
mixture with 20% symmetric noise, CE and GCE (they pack) and a KD student of
each seed's CE run, ``--seeds`` seeds, ``--epochs`` epochs. Times, in seconds:

- ``ray_startup_s``: starting a local cluster (or connecting to ``--address``);
- ``local_s``: the local executor in-process with 1 torch thread (what a 1-CPU Ray task uses);
- ``local_workers_s``: the local executor with ``--workers`` processes;
- ``ray_cold_s``: the first Ray pass (its worker processes start and import torch);
- ``ray_warm_s``: the same grid again into a fresh store (workers reused);
- ``ray_packs_s``: again, with the vectorized packs as tasks.

``identical`` is True when every final metric, epoch row and weight of both Ray
stores equals the local store's. Prints one JSON object.

    python benchmarks/ray_executor.py [--address HOST:PORT] [--seeds 2] [--epochs 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from losslab.engine.executor import execute
from losslab.engine.packing import plan_packs
from losslab.engine.plan import make_plan
from losslab.engine.ray_executor import execute_ray, ray_session
from losslab.engine.spec import parse_spec
from losslab.engine.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from specs import TINY  # noqa: E402


def grid(seeds: int, epochs: int) -> dict:
    spec = copy.deepcopy(TINY)
    spec["conditions"] = [{"name": "symmetric_noise", "params": {"rate": 0.2}}]
    spec["objectives"] = [{"name": "ce"}, {"name": "gce", "params": {"q": 0.7}},
                          {"label": "kd", "loss": {"name": "ce", "weight": 0.5},
                           "distill": {"name": "kd", "weight": 0.5, "teacher": {"objective": "ce"}}}]
    spec["seeds"], spec["train"]["epochs"] = seeds, epochs
    return spec


def same(a: Store, b: Store, ids: list[str]) -> bool:
    def state(s: Store, rid: str) -> dict:
        return torch.load(io.BytesIO(s.checkpoint(rid)), weights_only=True)["state"]

    if a.epoch_rows(ids) != b.epoch_rows(ids):
        return False
    for rid in ids:
        if a.final_metrics([rid]) != b.final_metrics([rid]) or a.run(rid)["status"] != "done":
            return False
        sa, sb = state(a, rid), state(b, rid)
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            return False
    return True


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", default=None, help="a running cluster (default: start a local one)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    plan = make_plan(parse_spec(grid(args.seeds, args.epochs)))
    ids = [r.run_id for r in plan]
    with tempfile.TemporaryDirectory() as tmp:
        stores = {n: Store(f"sqlite:///{tmp}/{n}.db") for n in ("local", "workers", "cold", "warm", "packs")}
        torch.set_num_threads(1)
        out = {"runs": len(plan), "local_s": timed(lambda: execute(plan, stores["local"]))}
        out["local_workers_s"] = timed(lambda: execute(plan, stores["workers"], workers=args.workers))
        t0 = time.perf_counter()
        with ray_session(args.address) as ray:
            out["ray_startup_s"] = round(time.perf_counter() - t0, 2)
            out["ray_cpus"] = ray.cluster_resources().get("CPU")
            out["ray_cold_s"] = timed(lambda: execute_ray(plan, stores["cold"], address=args.address))
            out["ray_warm_s"] = timed(lambda: execute_ray(plan, stores["warm"], address=args.address))
            packs = plan_packs(plan).packs
            out["ray_packs_s"] = timed(lambda: execute_ray(plan, stores["packs"], address=args.address, packs=packs))
        out["identical"] = all(same(stores["local"], stores[n], ids) for n in ("cold", "warm", "packs"))
        out["identical_local_workers"] = same(stores["local"], stores["workers"], ids)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
