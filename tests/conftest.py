"""Shared test set-up: tests/ on sys.path (importlib mode), one torch thread per test process (and per process
a test starts), store backends.

``make test`` runs two pytest workers on two cores; letting each also start
torch's own thread pool oversubscribes the machine and made small training
loops tens of times slower under load.
"""

import os
import sys
import uuid
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
# The same for the `losslab` processes tests start (kill-and-resume, concurrent writers): torch reads this
# when it is imported there.
os.environ.setdefault("OMP_NUM_THREADS", "1")


# -- store backends --------------------------------------------------------------------------------------------
# The store tests run on SQLite and on PostgreSQL. The PostgreSQL params need a server: LOSSLAB_TEST_POSTGRES_URL
# names a database on it whose user may CREATE DATABASE (.ci/run starts a throwaway one on loopback). Each test
# gets a database of its own, so `-n 2` workers never see each other's rows. Without the variable the PostgreSQL
# params are skipped, except under CI=true, where they fail: CI must never pass by silently skipping them.
POSTGRES_ENV = "LOSSLAB_TEST_POSTGRES_URL"


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny matrices only contend on a shared CPU, and results that are
    compared exactly (with a 1-CPU Ray task, across processes) need the same summation order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def _postgres_server():
    """``(base URL, AUTOCOMMIT admin engine)`` of the test server, or skip (fail under CI) without one."""
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        if _in_ci():
            pytest.fail(f"CI is set but {POSTGRES_ENV} is not: the PostgreSQL store tests must run in CI "
                        "(.ci/run starts a server and sets it)", pytrace=False)
        pytest.skip(f"{POSTGRES_ENV} is not set (see .ci/run for a throwaway PostgreSQL server)")
    import sqlalchemy as sa

    from losslab.engine.store_backend import parse_url

    base = parse_url(raw)
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    yield base, engine
    engine.dispose()


@pytest.fixture
def postgres_url(_postgres_server):
    """A new, empty PostgreSQL database for this test as a store URL (dropped afterwards)."""
    base, engine = _postgres_server
    name = f"losslab_t_{uuid.uuid4().hex[:16]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with engine.connect() as conn:  # FORCE: a test's own engines may still hold connections
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A store URL that does not exist yet (SQLite file) or is an empty database (PostgreSQL), per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return request.getfixturevalue("postgres_url")
