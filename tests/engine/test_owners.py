"""A lease held by a killed process of this machine is taken over at once; any other holder keeps its lease."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from losslab.engine.executor import Leases
from losslab.engine.owners import dead_local_owner, machine_key, new_owner
from losslab.engine.store import RunResult, Store

pytestmark = pytest.mark.skipif(machine_key() is None, reason="needs /proc (boot id and PID namespace)")


def _dead_pid() -> int:
    """The pid of a process that ran here and has been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _owner(pid: int, host: str | None = None, key: str | None = None) -> str:
    return f"{host or socket.gethostname()}:{pid}:cafef00d:{key or machine_key()}"


def test_owner_ids_name_this_host_process_and_machine():
    host, pid, nonce, key = new_owner().split(":")
    assert (host, int(pid), key) == (socket.gethostname(), os.getpid(), machine_key()) and len(nonce) == 8
    assert new_owner() != new_owner()


def test_only_a_dead_process_of_this_machine_counts_as_dead():
    dead = _dead_pid()
    assert dead_local_owner(_owner(dead))
    assert not dead_local_owner(_owner(os.getppid()))  # alive
    assert not dead_local_owner(_owner(os.getpid()))  # this process itself
    assert not dead_local_owner(_owner(dead, host="another-host"))
    assert not dead_local_owner(_owner(dead, key="0123456789ab"))  # another boot or PID namespace
    assert not dead_local_owner(f"{socket.gethostname()}:{dead}:cafef00d")  # an older losslab's owner id
    assert not dead_local_owner("garbage") and not dead_local_owner(_owner(0).replace(":0:", ":x:"))


def test_a_zombie_driver_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 60
        while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z" and time.time() < deadline:
            time.sleep(0.01)  # exited but not reaped yet: what a killed `losslab run` is until its shell reaps it
        assert dead_local_owner(_owner(proc.pid))
    finally:
        proc.wait()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_leases_take_over_a_dead_holder_at_once_and_wait_for_any_other(store_url):
    store = Store(store_url)
    hour = 3600.0
    dead, alive, foreign = _owner(_dead_pid()), _owner(os.getppid()), _owner(_dead_pid(), host="elsewhere")
    for run_id, holder in (("r_dead", dead), ("r_alive", alive), ("r_foreign", foreign)):
        assert store.claim(run_id, holder, hour)
    leases = Leases(store, 60.0)
    try:
        assert leases.claim("r_dead") and store.claim_holder("r_dead") == leases.owner
        assert not leases.claim("r_alive") and store.claim_holder("r_alive") == alive
        assert not leases.claim("r_foreign") and store.claim_holder("r_foreign") == foreign
    finally:
        leases.close()
    assert store.claim_holder("r_dead") is None  # released on close, like any run it held


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_take_over_is_a_compare_and_swap(store_url):
    store = Store(store_url)
    assert store.claim("r1", "old", 60.0)
    assert not store.take_over("r1", "someone-else", "new", 60.0)  # the claim is not theirs
    assert store.take_over("r1", "old", "new", 60.0) and store.claim_holder("r1") == "new"
    assert not store.take_over("r1", "old", "newer", 60.0)  # already moved on
    assert store.claim("r2", "old", 60.0)
    store.save(RunResult("r2", "done", {"seed": 0}, {"objective": "ce"}, history=[], final={},
                         started_at=1.0, finished_at=2.0))
    assert not store.take_over("r2", "old", "new", 60.0)  # done: nothing to take over
