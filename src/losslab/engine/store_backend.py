"""What differs between the store's backends: the engine, the write lock and the connection errors.

SQLite (one file: WAL mode, busy timeout) and PostgreSQL (a server, through
psycopg 3) hold the same schema and answer the same queries; only three things
differ, and they live here:

- the engine: SQLite gets its pragmas and SQLAlchemy-emitted ``BEGIN``;
  PostgreSQL gets the psycopg driver (a bare ``postgresql://`` means it) and a
  connect timeout, so an unreachable server is an error within seconds, not a hang;
- the write lock (:func:`write_transaction`): a claim or a save reads, then
  writes, and two processes must not both act on what they read;
- the one-line reason a database could not be opened.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError

# Seconds libpq waits for a PostgreSQL server to answer (a `connect_timeout` in the URL wins).
CONNECT_TIMEOUT_S = 5
# First key of every advisory lock losslab takes ("llab"), so its locks never meet another application's.
_LOCK_NAMESPACE = 0x6C6C6162
_SQLITE_BUSY_MS = 30000


class StoreError(ValueError):
    """The store URL is unusable, or the database is not a losslab store."""


class StoreMissing(StoreError):
    """A store opened read-only does not exist yet (no SQLite file, or no losslab tables)."""


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL of ``url``; a bare ``postgresql://`` (or ``postgres://``) is given the psycopg driver.

    Raises:
        StoreError: ``url`` is not a database URL.
    """
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        raise StoreError(f"Expected `--store` to be a database URL such as sqlite:///results.db or "
                         f"postgresql://user:password@host/db, but got {url!r}.") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def shown(url: URL) -> str:
    """``url`` for messages and logs: the password is never printed."""
    return url.render_as_string(hide_password=True)


def masked(url: str) -> str:
    """A ``--store`` URL as the user gave it, for messages and reports, with any password as ``***``.

    Text that is no URL at all carries no password worth hiding and is shown as it is.
    """
    try:
        return shown(sa.engine.make_url(url))
    except Exception:
        return url


def reason(exc: BaseException) -> str:
    """The driver's own message of a database error, on one line (libpq's are several)."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split()) or type(orig).__name__


def make_engine(url: URL, *, create: bool) -> Engine:
    """An engine for ``url``; connects lazily (nothing is reached or created yet except SQLite's folder)."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, create=create)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
        args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "losslab"}
        kwargs["connect_args"] = {k: v for k, v in args.items() if k not in url.query}
    try:
        return sa.create_engine(url, **kwargs)
    except ImportError as exc:
        if url.get_backend_name() == "postgresql":
            raise StoreError(f"`--store` {shown(url)} needs the PostgreSQL driver psycopg 3, which cannot be "
                             f"imported ({exc}); install it with: pip install 'losslab[postgres]'") from None
        raise StoreError(f"`--store` {shown(url)} needs a database driver that is not installed: {exc}") from None
    except Exception as exc:  # an unknown dialect or a malformed URL: say so in one line
        raise StoreError(f"cannot use `--store` {shown(url)}: {reason(exc)}") from None


@contextmanager
def write_transaction(engine: Engine, key: str) -> Iterator[Connection]:
    """A transaction that holds the write lock for ``key`` (a run id, or "schema") before it reads anything.

    SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock (waiting up
    to the busy timeout), so what the transaction reads is the latest commit, never
    a stale snapshot another writer has moved past.
    PostgreSQL: READ COMMITTED plus a transaction-scoped advisory lock on ``key``:
    writers of the same run (claim, save) or of the schema queue up, writers of
    other runs go on in parallel, and each statement sees every commit before it.
    Other backends: a plain transaction; primary keys still refuse a second copy.
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "sqlite":
            conn.execution_options(losslab_begin="BEGIN IMMEDIATE")
        with conn.begin():
            if dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_NAMESPACE, _lock_id(key))))
            yield conn


def _lock_id(key: str) -> int:
    """A stable signed 32-bit id for ``key`` (Python's ``hash`` differs per process); collisions only serialise."""
    v = zlib.crc32(key.encode())
    return v - 2**32 if v >= 2**31 else v


def _sqlite_engine(url: URL, *, create: bool) -> Engine:
    db = url.database
    if db and db != ":memory:":
        path = Path(db)
        if not create and not path.exists():
            raise StoreMissing(f"store {shown(url)} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_BUSY_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling breaks SAVEPOINT: a RELEASE committed the run
        # row on its own, so a kill between it and the metrics left a "done" run without
        # metrics. Take BEGIN away from the driver and let SQLAlchemy emit it (its documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # The busy timeout first: switching a new file to WAL needs the lock other openers may hold.
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("losslab_begin", "BEGIN"))

    return engine
