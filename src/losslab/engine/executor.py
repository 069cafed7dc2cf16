"""Executors: run the pending part of a plan and store each result as it finishes.

Workers only compute; the parent process is the single writer and stores each
run in one transaction the moment it completes, so an interrupted grid keeps
every finished run and the next ``losslab run`` does only the rest.

Several ``losslab run`` processes may share a spec and a store: each run is
claimed in the store before it starts, with a lease the claiming process
renews while it trains. Others skip a claimed run, wait for its result, and
take it over only if the lease expires (its owner was killed), so no run is
trained twice and no dead process blocks one for ever. A holder that was a
process of this machine and no longer runs is taken over at once
(:mod:`losslab.engine.owners`).

Packs (:mod:`losslab.engine.packing`) train first, in this process, each as
one stacked model (:mod:`losslab.engine.vmap`); every member is claimed
before its pack starts and stored as an ordinary run.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import torch

from losslab.engine.owners import dead_local_owner, new_owner
from losslab.engine.packing import Pack
from losslab.engine.plan import RunSpec
from losslab.engine.store import RunResult, Store
from losslab.engine.train import train_run


@dataclass
class ExecutionSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # trained here, but another writer had stored it first (wasted work; leases keep it rare)
    by_others: int = 0  # claimed and finished by another process while this one waited


def lease_seconds() -> float:
    """How long a claim lasts without renewal (``LOSSLAB_LEASE_SECONDS``, default 120 s)."""
    raw = os.environ.get("LOSSLAB_LEASE_SECONDS", "120")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"Expected LOSSLAB_LEASE_SECONDS to be a positive number of seconds, but got {raw!r}.")
    return value


class Leases:
    """This process's claims on runs, renewed by a daemon thread every quarter lease while they train."""

    def __init__(self, store: Store, lease_s: float) -> None:
        self.store, self.lease_s = store, lease_s
        self.owner = new_owner()
        self.held: set[str] = set()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._beat, name="losslab-lease", daemon=True)
        self._thread.start()

    def claim(self, run_id: str) -> bool:
        ok = self.store.claim(run_id, self.owner, self.lease_s)
        if not ok:  # held: by a killed process of this machine? Then there is nothing to wait for.
            holder = self.store.claim_holder(run_id)
            if holder is not None and dead_local_owner(holder):
                ok = self.store.take_over(run_id, holder, self.owner, self.lease_s)
        if ok:
            with self._lock:
                self.held.add(run_id)
        return ok

    def finished(self, run_id: str) -> None:
        with self._lock:  # Store.save dropped the claim in the result's transaction
            self.held.discard(run_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            with self._lock:
                ids = list(self.held)
            try:
                self.store.renew(ids, self.owner, self.lease_s)
            except Exception:  # a busy or briefly unreachable store: the next beat tries again
                continue

    def close(self) -> None:
        """Stop renewing and free the runs still held (interrupted), so others need not wait for expiry."""
        self._stop.set()
        self._thread.join(timeout=5)
        for run_id in list(self.held):
            try:
                self.store.release(run_id, self.owner)
            except Exception:  # the lease then simply expires
                pass


def pending_runs(plan: list[RunSpec], store: Store) -> list[RunSpec]:
    """Runs of the plan that have no finished result in the store (failed ones are retried)."""
    status = store.statuses(r.run_id for r in plan)
    return [r for r in plan if status.get(r.run_id) != "done"]


def _labels(run: RunSpec) -> dict[str, object]:
    return {"dataset": run.dataset, "condition": run.condition, "objective": run.objective, "seed": run.seed}


def teacher_runs(run: RunSpec) -> list[str]:
    """Stored runs whose weights this run distils from (plan teachers and explicit run ids)."""
    teacher = (run.config["objective"].get("distill") or {}).get("teacher") or {}
    return list(teacher.get("runs", []))


def missing_teachers(plan: list[RunSpec], store: Store) -> list[str]:
    """Explicit teacher run ids that are neither in the plan nor finished in the store."""
    in_plan = {r.run_id for r in plan}
    wanted = {t for r in plan for t in teacher_runs(r) if t not in in_plan}
    status = store.statuses(wanted)
    return sorted(t for t in wanted if status.get(t) != "done")


def _work(run: RunSpec, states: dict[str, bytes]) -> RunResult:
    return train_run(run.config, run.run_id, _labels(run), states)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGTERM this worker when its parent dies (Linux; a no-op elsewhere).

    A SIGKILLed driver cannot terminate its pool, and an orphaned worker would
    train its current run to the end for nobody: results are stored by the
    driver. The signal fires when the thread that started the worker exits;
    pool workers are started by the thread that submits, which waits for the
    pool, so that is the driver's lifetime.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl: orphans finish their run, as before
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class _Schedule:
    """Hands out runs whose teachers have finished; a run whose teacher failed fails without training."""

    def __init__(self, runs: list[RunSpec], store: Store) -> None:
        self.waiting, self.store = list(runs), store
        self.status = store.statuses({t for r in runs for t in teacher_runs(r)})
        self.inflight: set[str] = set()

    def finished(self, result: RunResult) -> None:
        self.status[result.run_id] = result.status
        self.inflight.discard(result.run_id)

    def take(self) -> tuple[list[tuple[RunSpec, dict[str, bytes]]], list[RunResult]]:
        """``(ready runs with their teachers' weights, runs failed because a teacher failed)``."""
        ready, blocked, keep = [], [], []
        pending = {r.run_id for r in self.waiting} | self.inflight
        for run in self.waiting:
            states = [self.status.get(t) for t in teacher_runs(run)]
            if all(s == "done" for s in states):
                ready.append((run, {t: self.store.checkpoint(t) for t in teacher_runs(run)}))
                self.inflight.add(run.run_id)
            elif any(s != "done" and t not in pending for t, s in zip(teacher_runs(run), states)):
                bad = [t for t, s in zip(teacher_runs(run), states) if s != "done"]
                blocked.append(RunResult(run.run_id, "failed", run.config, _labels(run),
                                         error=f"teacher run(s) {', '.join(bad)} did not finish"))
            else:
                keep.append(run)
        self.waiting = keep
        return ready, blocked

    def reserve(self, runs: list[RunSpec]) -> None:
        """Hand ``runs`` out now, outside :meth:`take` (a pack trains them); they count as in flight."""
        ids = {r.run_id for r in runs}
        self.waiting = [r for r in self.waiting if r.run_id not in ids]
        self.inflight |= ids


class Driver:
    """The single writer's bookkeeping, shared by every executor (local pool, Ray).

    It stores each result as it comes (``record``), hands out runs whose teachers
    are stored (``take``), claims a run just before it starts (``claim``; a run
    another process holds is set aside), and, with no local work left, waits for
    the runs others hold, taking over any whose lease expired (``settle_elsewhere``).
    """

    def __init__(self, runs: list[RunSpec], store: Store, on_result: Callable[[RunResult, bool], None] | None,
                 lease_s: float | None) -> None:
        self.store, self.on_result = store, on_result
        self.summary = ExecutionSummary()
        self.schedule = _Schedule(runs, store)
        self.leases = Leases(store, lease_s if lease_s is not None else lease_seconds())
        self.elsewhere: list[RunSpec] = []  # ready, but claimed by another process

    def record(self, result: RunResult) -> None:
        stored = self.store.save(result)
        self.leases.finished(result.run_id)
        self.schedule.finished(result)
        if not stored:
            self.summary.skipped += 1
        elif result.status == "done":
            self.summary.done += 1
        else:
            self.summary.failed += 1
        if self.on_result is not None:
            self.on_result(result, stored)

    def take(self) -> list[tuple[RunSpec, dict[str, bytes]]]:
        ready, blocked = self.schedule.take()
        for result in blocked:
            self.record(result)
        return ready

    def claim(self, run: RunSpec) -> bool:
        """Claim a run just before it starts (not when it becomes ready), so other processes share the grid."""
        if self.leases.claim(run.run_id):
            return True
        self.elsewhere.append(run)
        return False

    def settle_elsewhere(self) -> list[tuple[RunSpec, dict[str, bytes]]]:
        """With no local work left: wait for runs other processes hold, taking over any whose lease expired.

        Returns runs this process has claimed (or new, unclaimed ready runs); empty when everything is settled.
        """
        while self.elsewhere:
            status = self.store.statuses(r.run_id for r in self.elsewhere)
            mine, keep = [], []
            for run in self.elsewhere:
                if status.get(run.run_id) == "done":
                    result = RunResult(run.run_id, "done", run.config, _labels(run))
                    self.schedule.finished(result)
                    self.summary.by_others += 1
                    if self.on_result is not None:
                        self.on_result(result, False)
                elif self.leases.claim(run.run_id):
                    mine.append((run, {t: self.store.checkpoint(t) for t in teacher_runs(run)}))
                else:
                    keep.append(run)
            self.elsewhere[:] = keep
            mine += self.take()  # students whose teachers another process just stored
            if mine:
                return mine
            if self.elsewhere:
                time.sleep(min(1.0, self.leases.lease_s / 8))
        return self.take()

    def close(self) -> None:
        self.leases.close()


def execute(
    runs: list[RunSpec],
    store: Store,
    *,
    workers: int = 1,
    on_result: Callable[[RunResult, bool], None] | None = None,
    lease_s: float | None = None,
    packs: Sequence[Pack] = (),
) -> ExecutionSummary:
    """Train ``runs`` with a local process pool (in-process for one worker) and store each result.

    ``packs`` (from :func:`losslab.engine.packing.plan_packs`, their runs a part
    of ``runs``) train first, vectorized in this process; the rest as before.

    A student starts only after its teachers are stored (their weights travel
    with the task); workers only compute, the parent is the single writer.
    A run claimed by another process is waited for, and taken over when its
    lease (``lease_s``, default :func:`lease_seconds`) expires.
    """
    driver = Driver(runs, store, on_result, lease_s)
    schedule, summary = driver.schedule, driver.summary
    record, take, claim, settle_elsewhere = driver.record, driver.take, driver.claim, driver.settle_elsewhere

    try:
        for pack in packs:
            schedule.reserve(pack.runs)
            _run_pack(pack, claim, record)
        if workers <= 1 or len(runs) <= 1:
            while ready := take() or settle_elsewhere():
                for run, states in ready:
                    if claim(run):
                        record(_work(run, states))
            return summary
        _run_pool(workers, take, settle_elsewhere, claim, record)
        return summary
    finally:
        driver.close()


def _run_pack(pack: Pack, claim: Callable[[RunSpec], bool], record: Callable[[RunResult], None]) -> None:
    """Claim the pack's members, train those claimed together (one alone trains as usual), store each."""
    mine = [m for m in pack.members if claim(m.run)]  # the others wait with the runs other processes hold
    if len(mine) < 2:
        for m in mine:
            record(_work(m.run, {}))
        return
    from losslab.engine.vmap import train_pack

    try:
        results = train_pack(Pack(mine))
    except Exception as exc:  # the pack as a whole could not train: its members still must, one by one
        warnings.warn(f"a vectorized pack of {len(mine)} runs failed ({type(exc).__name__}: {exc}); "
                      "training them sequentially", RuntimeWarning, stacklevel=2)
        results = None
    if results is None:
        for m in mine:
            record(_work(m.run, {}))
        return
    for result in results:
        record(result)


def _run_pool(workers: int, take: Callable[[], list], settle: Callable[[], list], claim: Callable[[RunSpec], bool],
              record: Callable[[RunResult], None]) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(threads, os.getpid()))
    try:
        queue: list[tuple[RunSpec, dict[str, bytes]]] = take()
        active: set[Future[RunResult]] = set()
        while True:
            if not queue and not active:
                queue = settle()
                if not queue:
                    break
            # Keep at most 2 per worker in flight, so an interrupt cancels the rest cheaply.
            while queue and len(active) < 2 * workers:
                run, states = queue.pop(0)
                if claim(run):
                    active.add(pool.submit(_work, run, states))
            if not active:
                continue
            finished, active = wait(active, return_when=FIRST_COMPLETED)
            for fut in finished:
                record(fut.result())
            queue += take()
    except BaseException:
        # Interrupted: finished runs are already stored; stop the workers now rather than
        # letting them finish runs nobody will store.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        raise
    pool.shutdown(wait=True)
