"""The result store: runs, per-epoch metrics, final metrics and the environment.

SQLAlchemy Core over a URL: SQLite (WAL mode, busy timeout) is the default,
PostgreSQL (``postgresql://``, psycopg 3) serves many writers on many machines;
both hold the schema of :mod:`losslab.engine.store_schema`, and what differs
between them lives in :mod:`losslab.engine.store_backend`.
A finished run is written in ONE transaction (its row, every epoch row and
every final metric), so a killed process leaves either the whole run or none
of it. The run id is the primary key: a run is never stored twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from losslab.engine.store_backend import (StoreError, StoreMissing, make_engine, parse_url, reason, shown,
                                          write_transaction)
from losslab.engine.store_schema import (SCHEMA_VERSION, checkpoints, claims, epoch_metrics, final_metrics, meta,
                                         metadata, migrate, runs)

__all__ = ["DEFAULT_STORE", "SCHEMA_VERSION", "RunResult", "Store", "StoreError", "StoreMissing",
           "checkpoints", "claims", "epoch_metrics", "final_metrics", "meta", "metadata", "runs"]

DEFAULT_STORE = "sqlite:///losslab.db"
# Attempts at opening a store while other processes create it (SQLite's switch to WAL can report "locked").
_SCHEMA_ATTEMPTS = 20


@dataclass
class RunResult:
    """Everything a finished (or failed) run produced; the unit of one store transaction."""

    run_id: str
    status: str
    config: dict[str, Any]
    labels: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per evaluated epoch
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    checkpoint: bytes | None = None  # the final weights (teachers are loaded from here)
    started_at: float = 0.0
    finished_at: float = 0.0


def _finite_or_none(x: Any) -> float | None:
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


class Store:
    """A losslab result database at ``url``."""

    def __init__(self, url: str = DEFAULT_STORE, *, create: bool = True) -> None:
        """Open (``create``: and create or upgrade) the store at ``url``.

        Raises:
            StoreError: ``url`` is not a database URL, its driver is missing, the
                database cannot be reached (refused, unknown host, bad credentials,
                no such database; within the connect timeout) or its schema is newer.
            StoreMissing: ``create`` is False and there is no store there yet.
        """
        self.url = url
        parsed = parse_url(url)
        self.shown_url = shown(parsed)
        self.engine = make_engine(parsed, create=create)
        if create:
            self._init_schema()
            return
        try:
            with self.engine.connect() as conn:
                empty = not sa.inspect(conn).has_table("runs")
        except DBAPIError as exc:
            raise StoreError(f"cannot open `--store` {self.shown_url}: {reason(exc)}") from None
        if empty:  # an empty database (a file another tool touched, a new server database) holds no runs yet
            raise StoreMissing(f"store {self.shown_url} has no losslab tables yet")

    # -- claiming -------------------------------------------------------------
    def claim(self, run_id: str, owner: str, lease_s: float) -> bool:
        """Take (or renew) the lease on an unfinished run for ``lease_s`` seconds; False if it is done or held.

        An expired lease is free: its owner was killed or lost. The transaction holds
        the run's write lock (:func:`write_transaction`) before it reads, so a claim and
        a save of one run never interleave on any backend (a claim could otherwise read
        "not done", then "no holder" after the save committed, and train the run twice);
        without such a lock, two claimants racing to insert meet the primary key: one
        wins, the other gets False.
        """
        now = time.time()
        try:
            with write_transaction(self.engine, run_id) as conn:
                conn.execute(claims.delete().where(claims.c.run_id == run_id, claims.c.expires_at < now))
                if conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar() == "done":
                    return False
                holder = conn.execute(sa.select(claims.c.owner).where(claims.c.run_id == run_id)).scalar()
                if holder is None:
                    with conn.begin_nested():
                        conn.execute(claims.insert().values(run_id=run_id, owner=owner, expires_at=now + lease_s))
                    return True
                if holder != owner:
                    return False
                conn.execute(claims.update().where(claims.c.run_id == run_id).values(expires_at=now + lease_s))
                return True
        except IntegrityError:  # another claimant inserted between our read and insert
            return False

    def claim_holder(self, run_id: str) -> str | None:
        """The owner of the claim on ``run_id`` (expired or not), or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(claims.c.owner).where(claims.c.run_id == run_id)).scalar()

    def take_over(self, run_id: str, holder: str, owner: str, lease_s: float) -> bool:
        """Move the claim on an unfinished run from ``holder`` (known dead) to ``owner``; False if the run is
        done or the claim is no longer ``holder``'s (someone else took it, or it was released)."""
        with write_transaction(self.engine, run_id) as conn:
            if conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar() == "done":
                return False
            res = conn.execute(claims.update().where(claims.c.run_id == run_id, claims.c.owner == holder)
                               .values(owner=owner, expires_at=time.time() + lease_s))
            return (res.rowcount or 0) == 1

    def renew(self, run_ids: Iterable[str], owner: str, lease_s: float) -> int:
        """Extend ``owner``'s leases on ``run_ids``; returns how many it still held."""
        ids = list(run_ids)
        if not ids:
            return 0
        # No run lock: each row is updated only if ``owner`` still holds it, which a takeover cannot race.
        with self.engine.begin() as conn:
            res = conn.execute(claims.update().where(claims.c.run_id.in_(ids), claims.c.owner == owner)
                               .values(expires_at=time.time() + lease_s))
            return int(res.rowcount or 0)

    def release(self, run_id: str, owner: str) -> None:
        """Give up ``owner``'s lease on ``run_id`` (its run was cancelled before finishing)."""
        with self.engine.begin() as conn:
            conn.execute(claims.delete().where(claims.c.run_id == run_id, claims.c.owner == owner))

    def claim_holders(self) -> dict[str, tuple[str, float]]:
        """``{run_id: (owner, expires_at)}`` of the current claims, expired ones included."""
        with self.engine.connect() as conn:
            return {r: (o, e) for r, o, e in conn.execute(sa.select(claims.c.run_id, claims.c.owner,
                                                                    claims.c.expires_at))}

    # -- writing --------------------------------------------------------------
    def save(self, result: RunResult) -> bool:
        """Store one run atomically. Returns False if a finished run with that id already exists."""
        with write_transaction(self.engine, result.run_id) as conn:
            # The result is in (or another writer's is): the claim on it, whoever holds it, has served its purpose.
            conn.execute(claims.delete().where(claims.c.run_id == result.run_id))
            existing = conn.execute(
                sa.select(runs.c.status).where(runs.c.run_id == result.run_id)
            ).scalar_one_or_none()
            if existing == "done":
                return False
            if existing is not None:  # a failed attempt is replaced by the new one
                for table in (epoch_metrics, final_metrics, checkpoints, runs):
                    conn.execute(table.delete().where(table.c.run_id == result.run_id))
            try:
                # A savepoint, so a lost race leaves the outer transaction usable on every backend.
                with conn.begin_nested():
                    conn.execute(runs.insert().values(**self._run_row(result)))
            except IntegrityError:  # another writer stored it between our check and insert
                return False
            rows = [
                {"run_id": result.run_id, "epoch": int(h["epoch"]), "name": k, "value": _finite_or_none(v)}
                for h in result.history for k, v in h.items() if k != "epoch"
            ]
            if rows:
                conn.execute(epoch_metrics.insert(), rows)
            finals = [{"run_id": result.run_id, "name": k, "value": _finite_or_none(v)}
                      for k, v in result.final.items()]
            if finals:
                conn.execute(final_metrics.insert(), finals)
            if result.checkpoint is not None:
                conn.execute(checkpoints.insert().values(run_id=result.run_id, state=result.checkpoint))
        return True

    @staticmethod
    def _run_row(r: RunResult) -> dict[str, Any]:
        return {
            "run_id": r.run_id,
            "status": r.status,
            "config": json.dumps(r.config, sort_keys=True),
            "labels": json.dumps(r.labels, sort_keys=True),
            "records": json.dumps(r.records, sort_keys=True),
            "environment": json.dumps(r.environment, sort_keys=True),
            "error": r.error,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "duration_s": max(0.0, r.finished_at - r.started_at),
        }

    # -- reading --------------------------------------------------------------
    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        """``run_id -> status`` for the ids that are stored."""
        ids = list(run_ids)
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids, 500):
                q = sa.select(runs.c.run_id, runs.c.status).where(runs.c.run_id.in_(chunk))
                out.update({rid: st for rid, st in conn.execute(q)})
        return out

    def final_metrics(self, run_ids: Iterable[str]) -> dict[str, dict[str, float | None]]:
        """``run_id -> {metric: value}`` for finished runs among ``run_ids``."""
        out: dict[str, dict[str, float | None]] = {}
        for rid, name, value in self._done_rows(final_metrics, ("run_id", "name", "value"), run_ids):
            out.setdefault(rid, {})[name] = value
        return out

    def epoch_rows(self, run_ids: Iterable[str]) -> list[tuple[str, int, str, float | None]]:
        """``(run_id, epoch, metric, value)`` for finished runs among ``run_ids``, ordered."""
        return self._done_rows(epoch_metrics, ("run_id", "epoch", "name", "value"), run_ids)

    def _done_rows(self, table: sa.Table, columns: tuple[str, ...], run_ids: Iterable[str]) -> list[tuple]:
        """``columns`` of ``table`` for the finished runs among ``run_ids``, ordered by those columns."""
        cols = [table.c[c] for c in columns]
        out: list[tuple] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(list(run_ids), 500):
                q = (sa.select(*cols).join(runs, runs.c.run_id == table.c.run_id)
                     .where(table.c.run_id.in_(chunk), runs.c.status == "done").order_by(*cols[:-1]))
                out += [tuple(r) for r in conn.execute(q)]
        return out

    def checkpoint(self, run_id: str) -> bytes | None:
        """The stored final weights of a finished run, or None."""
        q = (sa.select(checkpoints.c.state).join(runs, runs.c.run_id == checkpoints.c.run_id)
             .where(checkpoints.c.run_id == run_id, runs.c.status == "done"))
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one_or_none()

    def find(self, prefix: str) -> list[str]:
        """Run ids starting with ``prefix``."""
        pattern = prefix.replace("%", "").replace("_", "") + "%"
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id.like(pattern))).scalars())

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its config, environment, final metrics and per-epoch history."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().one_or_none()
            if row is None:
                return None
            out = dict(row)
            for key in ("config", "labels", "records", "environment"):
                out[key] = json.loads(out[key])
            out["final"] = {n: v for n, v in conn.execute(
                sa.select(final_metrics.c.name, final_metrics.c.value).where(final_metrics.c.run_id == run_id))}
            history: dict[int, dict[str, Any]] = {}
            q = sa.select(epoch_metrics.c.epoch, epoch_metrics.c.name, epoch_metrics.c.value).where(
                epoch_metrics.c.run_id == run_id).order_by(epoch_metrics.c.epoch)
            for epoch, name, value in conn.execute(q):
                history.setdefault(epoch, {"epoch": epoch})[name] = value
            out["history"] = [history[e] for e in sorted(history)]
        return out

    def count(self, table: str = "runs") -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())

    # -- schema ---------------------------------------------------------------
    def _init_schema(self) -> None:
        """Create or upgrade the schema in one write transaction (concurrent openers queue on its lock).

        On SQLite a process can still find the file "locked" while another one opens
        it for the first time (switching it to WAL); that is transient, so it retries.
        """
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                with write_transaction(self.engine, "schema") as conn:
                    migrate(conn, self.shown_url)
                return
            except DBAPIError as exc:
                message = reason(exc)
                transient = "already exists" in message or "locked" in message
                if not transient or attempt == _SCHEMA_ATTEMPTS - 1:
                    raise StoreError(f"cannot open `--store` {self.shown_url}: {message}") from None
                time.sleep(0.05 * (attempt + 1))


def _chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i: i + n]
