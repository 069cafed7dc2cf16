"""Several `losslab run` processes on one spec and one store: every run is trained once, a dead one blocks nothing.

Each test runs on SQLite and on PostgreSQL (the ``store_url`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from losslab.engine.store import Store
from specs import TINY, write_spec


def _spec(tmp_path: Path, seeds: int, epochs: int = 2) -> Path:
    spec = copy.deepcopy(TINY)
    spec["datasets"][0]["params"].update(n_train=200, n_test=60)
    spec["conditions"] = []
    spec["seeds"] = seeds
    spec["train"]["epochs"] = epochs
    return write_spec(tmp_path / "grid.yaml", spec)


def _summary(out: str) -> dict[str, int]:
    m = re.search(r"done (\d+), failed (\d+), done by another process (\d+), already stored by another writer (\d+)",
                  " ".join(out.split()))
    assert m, out
    return dict(zip(("done", "failed", "others", "wasted"), map(int, m.groups())))


def test_four_processes_share_a_grid_without_training_any_run_twice(tmp_path, store_url):
    total = 24
    path = _spec(tmp_path, seeds=total // 2)
    url = store_url  # no schema yet: the four processes race to create it too
    cmd = [sys.executable, "-m", "losslab.cli", "run", str(path), "--executor", "local", "--store", url]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [(p.returncode, o[0][-3000:], o[1][-3000:])
                                                   for p, o in zip(procs, outs) if p.returncode]
    sums = [_summary(o[0]) for o in outs]
    store = Store(url)
    assert store.count("runs") == total and store.statuses(store.find("")) == dict.fromkeys(store.find(""), "done")
    assert sum(s["done"] for s in sums) == total, sums  # each run trained by exactly one process
    assert sum(s["wasted"] for s in sums) == 0 and sum(s["failed"] for s in sums) == 0, sums
    assert store.claim_holders() == {}
    print("per process:", sums)


def test_a_killed_process_lease_expires_and_another_finishes_its_runs(tmp_path, store_url):
    total = 12
    path = _spec(tmp_path, seeds=total // 2, epochs=4)
    url = store_url
    watch = Store(url)
    env = {**os.environ, "LOSSLAB_LEASE_SECONDS": "3"}
    cmd = [sys.executable, "-m", "losslab.cli", "run", str(path), "--executor", "local", "--store", url]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if watch.count("runs") >= 1 and watch.count("claims") >= 1:
            break
        time.sleep(0.02)
    assert first.poll() is None, "the first process finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    held = Store(url).claim_holders()
    assert held, "the killed process should have left a claim behind"
    started = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    store = Store(url)
    assert store.count("runs") == total and _summary(out)["done"] == total - len(
        [r for r in store.find("") if store.run(r)["finished_at"] < started])
    assert store.claim_holders() == {}
