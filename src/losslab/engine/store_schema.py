"""The store's tables, its schema version and the migrations between versions.

One SQLAlchemy Core schema serves SQLite and PostgreSQL alike. Its version is
the ``schema_version`` row of ``meta``. Opening a store brings it to
:data:`SCHEMA_VERSION` with :func:`migrate`: a new database gets every table,
an older store runs each missing step in order, and a newer one is refused.
Steps only add (tables, columns); a migration never drops or rewrites results.
:func:`migrate` runs inside one write transaction (both backends have
transactional DDL), so a store is upgraded completely or not at all, and
processes opening it together upgrade it once.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from losslab.engine.store_backend import StoreError

SCHEMA_VERSION = 3

# SQLite ignores VARCHAR lengths and PostgreSQL enforces them, so columns holding names the user or the
# machine chooses (a diagnostic's label, a host name) are TEXT there: both backends accept the same rows.
_Name = sa.String(64).with_variant(sa.Text(), "postgresql")
_Owner = sa.String(128).with_variant(sa.Text(), "postgresql")

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
    sa.Column("name", _Name, primary_key=True),
    sa.Column("value", sa.Float, nullable=True),
)

final_metrics = sa.Table(
    "final_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", _Name, primary_key=True),
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
    sa.Column("owner", _Owner, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# The tables of the first released schema; every later table comes from a step below.
V1_TABLES = (runs, epoch_metrics, final_metrics, meta)


def _add_table(table: sa.Table) -> Callable[[Connection], None]:
    def step(conn: Connection) -> None:
        table.create(conn, checkfirst=True)
    return step


# version -> (what it adds, the step from version - 1); steps run in order inside one transaction.
MIGRATIONS: dict[int, tuple[str, Callable[[Connection], None]]] = {
    2: ("checkpoints: the final weights of a finished run (teachers, soups)", _add_table(checkpoints)),
    3: ("claims: leases on runs being trained, shared by concurrent writers", _add_table(claims)),
}


def stored_version(conn: Connection) -> int | None:
    """The schema version recorded in the database, or None for a database without a losslab schema."""
    if not sa.inspect(conn).has_table("meta"):
        return None
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return None if value is None else int(value)


def migrate(conn: Connection, where: str) -> tuple[int | None, int]:
    """Bring the schema on ``conn`` to :data:`SCHEMA_VERSION`; returns ``(version found, version now)``.

    Run it in a write transaction (``store_backend.write_transaction``) so that
    concurrent openers migrate one after the other. ``where`` names the store in errors.

    Raises:
        StoreError: the store was written by a newer losslab (its schema is ahead of this one).
    """
    found = stored_version(conn)
    if found is None:
        metadata.create_all(conn)
        conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        return None, SCHEMA_VERSION
    if found > SCHEMA_VERSION:
        raise StoreError(f"store {where} has schema version {found}, newer than this losslab "
                         f"({SCHEMA_VERSION}); upgrade losslab to use it")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version][1](conn)
    if found < SCHEMA_VERSION:
        conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    return found, SCHEMA_VERSION
