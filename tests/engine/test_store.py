"""The store on every backend: ``store_url`` (tests/conftest.py) runs each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import random
import threading

import pytest
import sqlalchemy as sa

from losslab.engine.store import SCHEMA_VERSION, RunResult, Store, StoreError
from losslab.engine.store_schema import MIGRATIONS, V1_TABLES, epoch_metrics, final_metrics, meta, runs


def _result(rid="abc", status="done", acc=0.9):
    return RunResult(rid, status, {"seed": 0}, {"objective": "ce"}, history=[{"epoch": 1, "test_accuracy": acc}],
                     final={"test_accuracy": acc, "test_nll": math.nan}, started_at=1.0, finished_at=2.5)


def test_save_is_idempotent_and_complete(store_url):
    store = Store(store_url)
    assert store.save(_result())
    assert not store.save(_result(acc=0.1))  # a finished run is never stored twice or overwritten
    assert store.count("runs") == 1 and store.count("final_metrics") == 2 and store.count("epoch_metrics") == 1
    run = store.run("abc")
    assert run["final"] == {"test_accuracy": 0.9, "test_nll": None}  # NaN is stored as NULL, never as a score
    assert run["history"] == [{"epoch": 1, "test_accuracy": 0.9}]
    assert run["duration_s"] == pytest.approx(1.5)


def test_values_and_names_round_trip_exactly(store_url):
    """Doubles come back bit-identical and long user-chosen metric names fit, on every backend."""
    store = Store(store_url)
    r = _result("exact")
    name = "a_diagnostic_label_that_is_long." + "x" * 80  # over the 64 characters SQLite never enforced
    r.final = {"test_accuracy": 1 / 3, "tiny": 5e-324, "big": 1.7976931348623157e308, name: -0.1}
    r.history = [{"epoch": e, "loss": math.pi / (e + 1)} for e in range(3)]
    assert store.save(r)
    assert store.final_metrics(["exact"])["exact"] == r.final
    assert store.epoch_rows(["exact"]) == [("exact", e, "loss", math.pi / (e + 1)) for e in range(3)]


def test_failed_run_is_replaced_by_a_later_success(store_url):
    store = Store(store_url)
    failed = _result(status="failed")
    failed.error = "boom"
    store.save(failed)
    assert store.statuses(["abc"]) == {"abc": "failed"}
    assert store.final_metrics(["abc"]) == {}
    assert store.save(_result())
    assert store.statuses(["abc", "zzz"]) == {"abc": "done"}
    assert store.count("final_metrics") == 2


def test_find_by_prefix(store_url):
    store = Store(store_url)
    store.save(_result("abc123"))
    store.save(_result("abd456"))
    assert store.find("abc") == ["abc123"] and sorted(store.find("ab")) == ["abc123", "abd456"]
    assert store.find("a_c") == [] and sorted(store.find("%")) == sorted(store.find(""))  # no LIKE wildcards


def test_bad_urls_and_a_missing_sqlite_store_write_nothing(tmp_path):
    with pytest.raises(StoreError, match="--store"):
        Store("not a url")
    with pytest.raises(StoreError, match="does not exist"):
        Store(f"sqlite:///{tmp_path}/missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_read_only_open_of_an_empty_database_creates_nothing(store_url):
    with pytest.raises(StoreError, match="does not exist|no losslab tables"):
        Store(store_url, create=False)
    if store_url.startswith("postgresql"):
        assert sa.inspect(sa.create_engine(store_url)).get_table_names() == []


def test_lost_insert_race_is_reported_not_raised(store_url, monkeypatch):
    """Two writers: the second finds the row only at INSERT time (its status check saw nothing)."""
    first, second = Store(store_url), Store(store_url)
    assert first.save(_result())
    monkeypatch.setattr("losslab.engine.store.sa.select", _select_that_sees_nothing(monkeypatch), raising=True)
    assert second.save(_result(acc=0.2)) is False
    monkeypatch.undo()
    assert second.count("runs") == 1 and second.run("abc")["final"]["test_accuracy"] == 0.9


def _select_that_sees_nothing(monkeypatch):
    real = sa.select

    def fake(*cols):
        q = real(*cols)
        return q.where(sa.false())

    return fake


def test_a_save_that_fails_midway_leaves_nothing(store_url):
    """The run row, its epochs and its finals commit together or not at all (crash safety)."""
    store = Store(store_url)
    broken = _result()
    broken.history = [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 1, "test_accuracy": 0.6}]  # duplicate key
    with pytest.raises(Exception):
        store.save(broken)
    assert store.count("runs") == 0 and store.count("epoch_metrics") == 0 and store.count("final_metrics") == 0
    assert store.save(_result())  # and the store is still usable


def test_checkpoint_is_stored_with_the_run_and_only_a_finished_run_has_one(store_url):
    store = Store(store_url)
    result = _result("ck")
    result.checkpoint = b"weights"
    store.save(result)
    assert store.checkpoint("ck") == b"weights" and store.checkpoint("nope") is None
    failed = _result("bad", status="failed")
    failed.checkpoint = b"partial"
    store.save(failed)
    assert store.checkpoint("bad") is None  # only a finished run can teach


def _old_store(url: str, version: int) -> None:
    """A store as losslab wrote it at schema ``version``: that version's tables, its version row, one run."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in V1_TABLES:
            table.create(conn)
        for v in range(2, version + 1):
            MIGRATIONS[v][1](conn)
        conn.execute(meta.insert().values(key="schema_version", value=str(version)))
        conn.execute(runs.insert().values(**Store._run_row(_result("old"))))
        conn.execute(final_metrics.insert().values(run_id="old", name="test_accuracy", value=0.75))
        conn.execute(epoch_metrics.insert().values(run_id="old", epoch=1, name="test_accuracy", value=0.75))
    engine.dispose()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_an_old_store_is_upgraded_in_place_and_keeps_its_results(store_url, version):
    _old_store(store_url, version)
    names = set(sa.inspect(sa.create_engine(store_url)).get_table_names())
    assert ("checkpoints" in names) == (version >= 2) and "claims" not in names
    store = Store(store_url)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == str(
            SCHEMA_VERSION)
    # the results written before the upgrade are all there, and the new tables work
    assert store.final_metrics(["old"]) == {"old": {"test_accuracy": 0.75}}
    assert store.run("old")["history"] == [{"epoch": 1, "test_accuracy": 0.75}]
    assert store.claim("new", "a", 60.0) and store.claim_holders()["new"][0] == "a"
    new = _result("new")
    new.checkpoint = b"w"
    assert store.save(new) and store.checkpoint("new") == b"w" and store.count("runs") == 2
    Store(store_url)  # opening an up-to-date store again changes nothing
    assert store.count("runs") == 2


def test_a_store_from_a_newer_losslab_is_refused(store_url):
    store = Store(store_url)
    store.save(_result())
    with store.engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        Store(store_url)
    assert store.count("runs") == 1


def test_claims_exclude_other_owners_until_the_lease_expires(store_url, monkeypatch):
    import losslab.engine.store as store_mod

    store = Store(store_url)
    clock = [1000.0]
    monkeypatch.setattr(store_mod.time, "time", lambda: clock[0])
    assert store.claim("r1", "a", 10.0)
    assert not store.claim("r1", "b", 10.0)  # held
    assert store.claim("r1", "a", 10.0)  # the owner renews
    clock[0] += 9.0
    assert store.renew(["r1", "r2"], "a", 10.0) == 1 and not store.claim("r1", "b", 10.0)
    clock[0] += 10.5  # a's lease ran out: a killed owner blocks nothing for ever
    assert store.claim("r1", "b", 10.0) and store.claim_holders()["r1"][0] == "b"
    assert store.renew(["r1"], "a", 10.0) == 0  # a lost it
    store.release("r1", "a")  # not a's to release
    assert store.claim_holders()["r1"][0] == "b"
    store.release("r1", "b")
    assert store.claim_holders() == {}


def test_a_stored_result_drops_its_claim_and_cannot_be_claimed(store_url):
    store = Store(store_url)
    host = "node-" + "x" * 200 + ":4242:deadbeef"  # a long host name fits too
    assert store.claim("done1", host, 60.0)
    store.save(_result("done1"))
    assert store.claim_holders() == {} and not store.claim("done1", "b", 60.0)
    assert store.claim("fail1", host, 60.0)
    store.save(_result("fail1", status="failed"))
    assert store.claim("fail1", "b", 60.0)  # a failed run may be retried by anyone


def test_concurrent_claimants_train_every_run_exactly_once(store_url):
    """Four writers on their own connections race to claim, "train" and save the same 40 runs.

    A claim that wins after another writer stored the run (it read "not done" before
    that save committed and "no holder" after) would train the run twice; its save
    then returns False. Every won claim must end in a stored result, each run once.
    """
    ids = [f"run{i:03d}" for i in range(40)]
    Store(store_url)  # create the schema once, so the race is about runs
    won: list[list[str]] = [[] for _ in range(4)]
    lost_saves: list[str] = []
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            store = Store(store_url)
            order = ids[:]
            random.Random(k).shuffle(order)
            for rid in order + order:  # a second pass meets finished runs and stale reads
                if store.claim(rid, f"w{k}", 60.0):
                    won[k].append(rid)
                    if not store.save(_result(rid)):
                        lost_saves.append(rid)
            store.engine.dispose()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    trained = sorted(r for w in won for r in w)
    assert trained == ids and not lost_saves, (len(trained), lost_saves)
    store = Store(store_url)
    assert store.count("runs") == 40 and store.count("final_metrics") == 80 and store.claim_holders() == {}
