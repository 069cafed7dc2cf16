"""Crash safety: `losslab run` SIGKILLed at random moments five times, then finished, loses and duplicates
nothing; a SIGKILLed driver leaves no pool worker behind."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from specs import TINY, write_spec

TOTAL = 60
KILLS = 5


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return {
            "runs": conn.execute("SELECT count(*) FROM runs").fetchone()[0],
            "distinct": conn.execute("SELECT count(DISTINCT run_id) FROM runs").fetchone()[0],
            "done": conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0],
        }


def _done(db: Path) -> int:
    """Finished runs so far; 0 before the store file or its tables exist (start-up)."""
    if not db.exists():
        return 0
    try:
        return _counts(db)["done"]
    except sqlite3.OperationalError:
        return 0


def _rows_per_run(db: Path, table: str) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(conn.execute(f"SELECT r.run_id, count(m.run_id) FROM runs r LEFT JOIN {table} m "
                                 "ON m.run_id = r.run_id GROUP BY r.run_id").fetchall())


def test_sixty_runs_survive_five_random_kills_each_stored_once(tmp_path):
    spec = copy.deepcopy(TINY)
    spec["datasets"][0]["params"].update(n_train=200, n_test=60)
    spec["conditions"] = []
    spec["seeds"] = TOTAL // len(spec["objectives"])
    spec["train"]["epochs"] = 2
    path = write_spec(tmp_path / "soak.yaml", spec)
    db = tmp_path / "soak.db"
    cmd = [sys.executable, "-m", "losslab.cli", "run", str(path), "--executor", "local", "--store", f"sqlite:///{db}"]
    rng = random.Random(20261123)
    kills, stored_at_kill = 0, []
    while kills < KILLS:
        before = _done(db)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Let this process store at least one run, then kill at a random moment of a later run (training,
        # evaluating or writing); start-up can take seconds on a loaded machine, so wall-clock delays alone
        # would mostly kill the import.
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and (
                _done(db) < before + 1 + kills % 2):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:  # finished before the kill: the grid is too fast to soak
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        stored_at_kill.append(_done(db))
    assert kills == KILLS, f"the grid finished after {kills} kills; make it longer so every kill lands mid-grid"
    assert stored_at_kill[-1] < TOTAL and stored_at_kill == sorted(stored_at_kill)  # progress is never lost
    subprocess.run(cmd, check=True, capture_output=True)
    counts = _counts(db)
    assert counts == {"runs": TOTAL, "distinct": TOTAL, "done": TOTAL}, counts
    # no half-written run: every run has the same full set of per-epoch and final rows
    for table in ("epoch_metrics", "final_metrics"):
        per_run = _rows_per_run(db, table)
        assert len(per_run) == TOTAL and len(set(per_run.values())) == 1 and min(per_run.values()) > 0, per_run
    status = subprocess.run([sys.executable, "-m", "losslab.cli", "status", str(path), "--store", f"sqlite:///{db}",
                             "--json"], check=True, capture_output=True, text=True)
    assert json.loads(status.stdout) == {"spec": "tiny", "total": TOTAL, "done": TOTAL, "failed": 0, "pending": 0}
    print(f"kills {kills}, done at each kill {stored_at_kill}, runs expected {TOTAL}, found {counts['done']}, "
          f"duplicates {counts['runs'] - counts['distinct']}")


def _pool_workers(parent: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``parent`` and that run a multiprocessing spawn worker."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if int(fields[1]) == parent and fields[0] != "Z" and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_killed_driver_takes_its_pool_workers_with_it(tmp_path):
    """SIGKILL cannot be caught, so the driver can't stop its pool; the kernel's parent-death signal does."""
    spec = copy.deepcopy(TINY)
    spec["train"]["epochs"] = 400  # each run outlives the test
    path = write_spec(tmp_path / "orphans.yaml", spec)
    cmd = [sys.executable, "-m", "losslab.cli", "run", str(path), "--executor", "local", "--workers", "2",
           "--store", f"sqlite:///{tmp_path / 'orphans.db'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while len(workers := _pool_workers(proc.pid)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(workers) == 2, "the pool never started two workers"
        time.sleep(3.0)  # let them import and start training
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "pool workers outlived their killed driver"
    finally:
        proc.kill()
        for w in filter(_alive, workers):  # don't leave them to burn the suite's CPU if the test failed
            os.kill(w, signal.SIGKILL)
