from __future__ import annotations

import math

import pytest

from losslab.engine.store import SCHEMA_VERSION, RunResult, Store, StoreError


def _result(rid="abc", status="done", acc=0.9):
    return RunResult(rid, status, {"seed": 0}, {"objective": "ce"}, history=[{"epoch": 1, "test_accuracy": acc}],
                     final={"test_accuracy": acc, "test_nll": math.nan}, started_at=1.0, finished_at=2.5)


def test_save_is_idempotent_and_complete(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    assert store.save(_result())
    assert not store.save(_result(acc=0.1))  # a finished run is never stored twice or overwritten
    assert store.count("runs") == 1 and store.count("final_metrics") == 2 and store.count("epoch_metrics") == 1
    run = store.run("abc")
    assert run["final"] == {"test_accuracy": 0.9, "test_nll": None}  # NaN is stored as NULL, never as a score
    assert run["history"] == [{"epoch": 1, "test_accuracy": 0.9}]
    assert run["duration_s"] == pytest.approx(1.5)


def test_failed_run_is_replaced_by_a_later_success(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    failed = _result(status="failed")
    failed.error = "boom"
    store.save(failed)
    assert store.statuses(["abc"]) == {"abc": "failed"}
    assert store.final_metrics(["abc"]) == {}
    assert store.save(_result())
    assert store.statuses(["abc", "zzz"]) == {"abc": "done"}
    assert store.count("final_metrics") == 2


def test_find_by_prefix_and_bad_urls(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.save(_result("abc123"))
    store.save(_result("abd456"))
    assert store.find("abc") == ["abc123"] and len(store.find("ab")) == 2
    with pytest.raises(StoreError, match="--store"):
        Store("not a url")
    with pytest.raises(StoreError, match="does not exist"):
        Store(f"sqlite:///{tmp_path}/missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_lost_insert_race_is_reported_not_raised(tmp_path, monkeypatch):
    """Two writers: the second finds the row only at INSERT time (its status check saw nothing)."""
    url = f"sqlite:///{tmp_path}/s.db"
    first, second = Store(url), Store(url)
    assert first.save(_result())
    monkeypatch.setattr("losslab.engine.store.sa.select", _select_that_sees_nothing(monkeypatch), raising=True)
    assert second.save(_result(acc=0.2)) is False
    monkeypatch.undo()
    assert second.count("runs") == 1 and second.run("abc")["final"]["test_accuracy"] == 0.9


def _select_that_sees_nothing(monkeypatch):
    import sqlalchemy as sa

    real = sa.select

    def fake(*cols):
        q = real(*cols)
        return q.where(sa.false())

    return fake


def test_a_save_that_fails_midway_leaves_nothing(tmp_path):
    """The run row, its epochs and its finals commit together or not at all (crash safety)."""
    store = Store(f"sqlite:///{tmp_path}/s.db")
    broken = _result()
    broken.history = [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 1, "test_accuracy": 0.6}]  # duplicate key
    with pytest.raises(Exception):
        store.save(broken)
    assert store.count("runs") == 0 and store.count("epoch_metrics") == 0 and store.count("final_metrics") == 0
    assert store.save(_result())  # and the store is still usable


def test_checkpoint_is_stored_with_the_run_and_a_v1_store_is_upgraded(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/s.db"
    store = Store(url)
    with store.engine.begin() as conn:  # make it look like a store written before checkpoints existed
        conn.execute(sa.text("DROP TABLE checkpoints"))
        conn.execute(sa.text("DROP TABLE claims"))
        conn.execute(sa.text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    store = Store(url)
    with store.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    assert version == str(SCHEMA_VERSION) and store.claim_holders() == {}
    result = _result("ck")
    result.checkpoint = b"weights"
    store.save(result)
    assert store.checkpoint("ck") == b"weights" and store.checkpoint("nope") is None
    failed = _result("bad", status="failed")
    failed.checkpoint = b"partial"
    store.save(failed)
    assert store.checkpoint("bad") is None  # only a finished run can teach


def test_claims_exclude_other_owners_until_the_lease_expires(tmp_path, monkeypatch):
    import losslab.engine.store as store_mod

    store = Store(f"sqlite:///{tmp_path}/c.db")
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


def test_a_stored_result_drops_its_claim_and_cannot_be_claimed(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/c.db")
    assert store.claim("done1", "a", 60.0)
    store.save(_result("done1"))
    assert store.claim_holders() == {} and not store.claim("done1", "b", 60.0)
    assert store.claim("fail1", "a", 60.0)
    store.save(_result("fail1", status="failed"))
    assert store.claim("fail1", "b", 60.0)  # a failed run may be retried by anyone
