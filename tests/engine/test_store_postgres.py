"""PostgreSQL as the store: URL handling, unreachable servers, and a CLI run that equals the SQLite one.

The tests that need a server take ``postgres_url`` (tests/conftest.py); the
rest need only the psycopg driver and a closed or silent local port.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import losslab.engine.store_backend as backend
from losslab.cli import app
from losslab.engine.store import Store, StoreError
from specs import TINY, write_spec

if os.environ.get("CI", "").strip().lower() not in ("1", "true", "yes"):  # in CI a missing driver must fail
    pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg 3) is not installed")

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.mark.parametrize("url, driver", [
    ("postgresql://u:p@h/db", "postgresql+psycopg"),
    ("postgres://u:p@h/db", "postgresql+psycopg"),
    ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
    ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg2"),  # a driver the user names is kept
    ("sqlite:///x.db", "sqlite"),
])
def test_a_bare_postgresql_url_means_psycopg(url, driver):
    assert backend.parse_url(url).drivername == driver


def test_a_missing_driver_names_the_postgres_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails as if it were not installed
    with pytest.raises(StoreError, match=r"losslab\[postgres\]") as err:
        Store("postgresql://u:secret@127.0.0.1:5432/db")
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


# every command that takes --store, with the arguments it needs besides it
_COMMANDS = {
    "run": lambda p, t: ["run", p],
    "status": lambda p, t: ["status", p],
    "report": lambda p, t: ["report", p],
    "export": lambda p, t: ["export", p, "--out", t / "x.csv"],
    "plot": lambda p, t: ["plot", p, "--metric", "test_accuracy", "--out", t / "x.png"],
    "show": lambda p, t: ["show", "feedface"],
    "lmc": lambda p, t: ["lmc", "feedface", "deadbeef"],
    "soup": lambda p, t: ["soup", "feedface", "deadbeef"],
}


def _one_line_store_error(res, *needles: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, (res.exit_code, res.output)
    assert lines[0].startswith("error:") and "`--store`" in lines[0] and "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "secret" not in res.output  # the password is never printed
    return lines[0]


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_command_fails_in_one_line_when_nothing_listens(tmp_path, command):
    path = write_spec(tmp_path / "tiny.yaml", TINY)
    url = f"postgresql://losslab:secret@127.0.0.1:{_closed_port()}/results"
    res = _invoke(*_COMMANDS[command](path, tmp_path), "--store", url)
    _one_line_store_error(res, "Connection refused")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.png").exists()


def test_a_silent_server_times_out_instead_of_hanging(tmp_path, monkeypatch):
    """A port that accepts connections but never answers: libpq would wait for ever without connect_timeout."""
    monkeypatch.setattr(backend, "CONNECT_TIMEOUT_S", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the kernel completes the handshake; nobody ever reads or writes
    # Should the timeout not apply, the port closes after a minute, so the test fails instead of hanging.
    threading.Timer(60, server.close).start()
    url = f"postgresql://losslab:secret@127.0.0.1:{server.getsockname()[1]}/results"
    started = time.monotonic()
    res = _invoke("status", write_spec(tmp_path / "tiny.yaml", TINY), "--store", url)
    elapsed = time.monotonic() - started
    server.close()
    _one_line_store_error(res, "timeout")
    print(f"silent server: exit 2 after {elapsed:.1f} s with connect_timeout 2 s")


def test_an_unknown_host_fails_in_one_line(tmp_path):
    res = _invoke("status", write_spec(tmp_path / "tiny.yaml", TINY), "--store",
                  "postgresql://losslab:secret@no-such-host.invalid/results")  # .invalid never resolves (RFC 6761)
    _one_line_store_error(res, "no-such-host.invalid")


def test_bad_credentials_and_a_missing_database_fail_in_one_line(tmp_path, postgres_url):
    path = write_spec(tmp_path / "tiny.yaml", TINY)
    good = backend.parse_url(postgres_url)
    wrong_password = good.set(password="secret").render_as_string(hide_password=False)
    for command in ("status", "run"):
        _one_line_store_error(_invoke(command, path, "--store", wrong_password), "password authentication failed")
    missing = good.set(database="losslab_no_such_db").render_as_string(hide_password=False)
    for command in ("status", "run"):
        _one_line_store_error(_invoke(command, path, "--store", missing), 'database "losslab_no_such_db" does not')


def test_cli_run_into_postgresql_equals_the_sqlite_run(tmp_path, postgres_url):
    """`losslab run` into each backend, then status, report and export read the same results from both."""
    spec = copy.deepcopy(TINY)
    spec["conditions"] = []
    path = write_spec(tmp_path / "tiny.yaml", spec)
    bare = "postgresql://" + postgres_url.split("://", 1)[1]  # as a user writes it: the driver is implied
    urls = {"sqlite": f"sqlite:///{tmp_path}/r.db", "postgresql": bare}
    assert json.loads(_invoke("status", path, "--store", bare, "--json").stdout)["pending"] == 4
    assert sa.inspect(sa.create_engine(postgres_url)).get_table_names() == []  # status never creates a store
    out: dict[str, dict] = {}
    for name, url in urls.items():
        res = _invoke("run", path, "--store", url)
        assert res.exit_code == 0, res.output
        store = Store(url, create=False)
        ids = sorted(store.find(""))
        out[name] = {
            "status": json.loads(_invoke("status", path, "--store", url, "--json").stdout),
            "report": json.loads(_invoke("report", path, "--store", url, "--json").stdout),
            "finals": store.final_metrics(ids),
            "epochs": store.epoch_rows(ids),
            "runs": {r: {k: v for k, v in store.run(r).items() if k not in ("started_at", "finished_at",
                                                                              "duration_s", "environment")}
                     for r in ids},
        }
        assert _invoke("export", path, "--store", url, "--out", tmp_path / f"{name}.csv").exit_code == 0
    assert out["postgresql"]["status"] == {"spec": "tiny", "total": 4, "done": 4, "failed": 0, "pending": 0}
    for key in ("status", "report", "finals", "epochs", "runs"):
        assert out["postgresql"][key] == out["sqlite"][key], key  # bit-identical, not approximately equal
    assert (tmp_path / "postgresql.csv").read_text() == (tmp_path / "sqlite.csv").read_text()
    assert "4 already stored, 0 to run" in _invoke("run", path, "--store", bare).stdout
