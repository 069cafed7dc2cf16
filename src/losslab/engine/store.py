"""The result store: runs, per-epoch metrics, final metrics and the environment.

SQLAlchemy Core over any URL; SQLite (WAL mode, busy timeout) is the default.
A finished run is written in ONE transaction (its row, every epoch row and
every final metric), so a killed process leaves either the whole run or none
of it. The run id is the primary key: a run is never stored twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

# 2 added the checkpoints table, 3 the claims table (both additive: an older store is upgraded in place on open).
SCHEMA_VERSION = 3
DEFAULT_STORE = "sqlite:///losslab.db"

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # done | failed
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("records", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
)

epoch_metrics = sa.Table(
    "epoch_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=True),
)

final_metrics = sa.Table(
    "final_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=True),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("state", sa.LargeBinary, nullable=False),  # torch.save of the final model state
)

# A run being trained by some `losslab run` process: other processes leave it alone until the lease
# expires (its owner renews it while training; a killed owner stops renewing, so the run is freed).
claims = sa.Table(
    "claims",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


class StoreError(ValueError):
    """The store URL is unusable, or the database is not a losslab store."""


class StoreMissing(StoreError):
    """A SQLite store that was opened read-only does not exist yet."""


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
        self.url = url
        self.engine = _make_engine(url, create=create)
        if create:
            self._init_schema()
        elif not sa.inspect(self.engine).has_table("runs"):
            # An empty database (a file another tool touched, a fresh server) holds no runs yet.
            raise StoreMissing(f"store {url} has no losslab tables yet")

    # -- claiming -------------------------------------------------------------
    def claim(self, run_id: str, owner: str, lease_s: float) -> bool:
        """Take (or renew) the lease on an unfinished run for ``lease_s`` seconds; False if it is done or held.

        An expired lease is free: its owner was killed or lost. The expired claim is
        deleted first, so on SQLite the transaction takes the write lock before it
        reads (no stale snapshot), and on any backend two claimants racing to insert
        the same run id meet the primary key: one wins, the other gets False.
        """
        now = time.time()
        try:
            with self.engine.begin() as conn:
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

    def renew(self, run_ids: Iterable[str], owner: str, lease_s: float) -> int:
        """Extend ``owner``'s leases on ``run_ids``; returns how many it still held."""
        ids = list(run_ids)
        if not ids:
            return 0
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
        with self.engine.begin() as conn:
            # Written first: on SQLite this takes the write lock before the read below, so a writer that
            # committed meanwhile makes this one wait (busy timeout) instead of failing on a stale snapshot.
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
        # Processes opening one new store together race between "does it exist" and CREATE (the loser
        # sees "already exists"), and on SQLite a schema transaction that read before another process
        # wrote fails at once with "database is locked" (a stale snapshot, which the busy timeout does
        # not cover). Both are transient: the next attempt finds the winner's tables.
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                self._create_schema()
                return
            except OperationalError as exc:
                message = str(exc.orig).splitlines()[0]
                transient = "already exists" in message or "locked" in message
                if not transient or attempt == _SCHEMA_ATTEMPTS - 1:
                    raise StoreError(f"cannot open store {self.url}: {message}") from None
                time.sleep(0.05 * (attempt + 1))

    def _create_schema(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            # A no-op write first takes SQLite's write lock, so processes opening one new store together
            # read the version one after the other (no stale snapshot, no duplicate insert).
            conn.execute(meta.update().where(meta.c.key == "__lock__").values(value=""))
            version = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if version is None:
                conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(version) < SCHEMA_VERSION:  # create_all above added the new tables
                conn.execute(meta.update().where(meta.c.key == "schema_version").values(
                    value=str(SCHEMA_VERSION)))
            elif int(version) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.url} has schema version {version}, newer than this losslab ({SCHEMA_VERSION})"
                )


_SCHEMA_ATTEMPTS = 20


def _chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i: i + n]


def _make_engine(url: str, *, create: bool) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        raise StoreError(f"Expected `--store` to be a database URL such as sqlite:///results.db, but got {url!r}.") \
            from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return sa.create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # a missing driver or a malformed URL: say so in one line
            raise StoreError(f"cannot use store {url}: {exc}") from None
    db = parsed.database
    if db and db != ":memory:":
        path = Path(db)
        if not create and not path.exists():
            raise StoreMissing(f"store {url} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling breaks SAVEPOINT: a RELEASE committed the run
        # row on its own, so a kill between it and the metrics left a "done" run without
        # metrics. Take BEGIN away from the driver and let SQLAlchemy emit it (its documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine
