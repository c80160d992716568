"""The store's guarantees, on SQLite (always) and PostgreSQL (when $JUDGE_TEST_POSTGRES_URL
reaches a server): stored before acknowledged, exactly one terminal status, stale results
refused, bounded retries, atomic admission limits."""

from __future__ import annotations

import threading
import uuid

import pytest

from judge_helpers import fresh_store  # noqa: E402
from runner.judge.rejected import Rejected
from runner.judge.server.storage.records import AdmissionLimits, NewSubmission
from runner.judge.server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(60)
LIMITS = AdmissionLimits(queue_capacity=100, max_in_flight=100, rate_limit=1000, rate_window_s=60)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = fresh_store(request.param, tmp_path)
    yield s
    s.close()


def new(owner="alice", accelerator="cpu", sid=None):
    return NewSubmission(id=sid or uuid.uuid4().hex, owner=owner, action="run", language="pytorch",
                         accelerator=accelerator, challenge="1_vector_add", file_name="s.py",
                         content="x", seed=7)


RESULT = {"verdict": "accepted", "message": "ok"}


def test_admit_stores_the_submission_with_its_first_event(store):
    record, created = store.admit(new(sid="sub-00000001"), LIMITS)
    assert created and record.state == "queued"
    assert [(e.seq, e.status) for e in store.events("sub-00000001")] == [(0, "queued")]
    again, created = store.admit(new(sid="sub-00000001"), LIMITS)     # the idempotency key
    assert not created and again.id == record.id
    with pytest.raises(Rejected) as err:
        store.admit(new(owner="bob", sid="sub-00000001"), LIMITS)
    assert err.value.code == "id_taken"


def test_a_result_is_stored_once_and_a_stale_attempt_is_refused(store):
    record, _ = store.admit(new(), LIMITS)
    first = store.claim("w1", ["cpu"], lease_s=30)
    assert first.submission_id == record.id and first.attempt == 1
    # the lease is taken back (the reaper, long after it expired) and another worker claims
    assert [t.outcome for t in store.reap(2, 0, 3600, now=first.expires + 1)] == ["requeued"]
    second = store.claim("w2", ["cpu"], lease_s=30, now=first.expires + 2)
    assert second.attempt == 2
    assert not store.heartbeat(record.id, first.lease_id, 30, now=first.expires + 3)
    assert store.add_event(record.id, first.lease_id, "running", "x") is None
    stale = store.complete(record.id, first.lease_id, "success", "accepted", RESULT)
    assert not stale.stored and stale.reason == "stale"
    assert store.complete(record.id, second.lease_id, "success", "accepted", RESULT).stored
    dup = store.complete(record.id, second.lease_id, "success", "accepted", RESULT)
    assert not dup.stored and dup.reason == "duplicate"
    terminal = [e for e in store.events(record.id) if e.status == "success"]
    assert len(terminal) == 1 and store.get(record.id).state == "done"


def test_two_workers_racing_for_one_job_store_one_result(store):
    record, _ = store.admit(new(), LIMITS)
    leases, barrier = [], threading.Barrier(8)

    def race(k):
        barrier.wait()
        lease = store.claim(f"w{k}", ["cpu"], lease_s=30, submission_id=record.id)
        if lease:
            leases.append(lease)
    threads = [threading.Thread(target=race, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(leases) == 1
    results = [store.complete(record.id, lease.lease_id, "success", "accepted", RESULT)
               for lease in leases * 3]
    assert [r.stored for r in results] == [True, False, False]


def test_infrastructure_faults_are_retried_twice_then_interrupted(store):
    record, _ = store.admit(new(), LIMITS)
    outcomes = []
    for attempt in range(3):
        lease = store.claim(f"w{attempt}", ["cpu"], lease_s=30)
        assert lease.attempt == attempt + 1
        outcomes.append(store.release(record.id, lease.lease_id, "job process died", 2, 0).outcome)
    assert outcomes == ["requeued", "requeued", "interrupted"]
    done = store.get(record.id)
    assert done.state == "done" and done.status == "interrupted" and done.attempts == 3
    assert store.claim("w9", ["cpu"], lease_s=30) is None
    assert [e.status for e in store.events(record.id)].count("interrupted") == 1


def test_a_retry_prefers_another_worker(store):
    a, _ = store.admit(new(), LIMITS)
    lease = store.claim("w1", ["cpu"], lease_s=30)
    store.release(a.id, lease.lease_id, "fault", 2, avoid_s=60)
    assert store.claim("w1", ["cpu"], lease_s=30) is None        # not the worker that failed
    assert store.claim("w2", ["cpu"], lease_s=30).submission_id == a.id


def test_a_submission_no_worker_takes_ends_interrupted(store):
    record, _ = store.admit(new(accelerator="H100"), LIMITS)
    assert store.reap(2, 0, max_queue_wait_s=60, now=record.created + 61)[0].outcome == "interrupted"
    assert store.get(record.id).status == "interrupted"


def test_claims_are_routed_by_accelerator(store):
    h100, _ = store.admit(new(accelerator="H100"), LIMITS)
    store.admit(new(accelerator="A100"), LIMITS)
    assert store.claim("w", ["T4"], lease_s=30) is None
    assert store.claim("w", ["A100"], lease_s=30, submission_id=h100.id) is None
    assert store.claim("w", ["H100"], lease_s=30).submission_id == h100.id


def test_admission_limits_hold_under_concurrent_submissions(store):
    limits = AdmissionLimits(queue_capacity=100, max_in_flight=3, rate_limit=1000, rate_window_s=60)
    admitted, refused, barrier = [], [], threading.Barrier(10)

    def go():
        barrier.wait()
        try:
            admitted.append(store.admit(new(owner="alice"), limits))
        except Rejected as exc:
            refused.append(exc.code)
    threads = [threading.Thread(target=go) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(admitted) == 3 and refused == ["too_many_in_flight"] * 7
    store.admit(new(owner="bob"), limits)                     # a cap per token, not global


def test_queue_full_and_rate_limit(store):
    with pytest.raises(Rejected) as err:
        for _ in range(3):
            store.admit(new(owner="alice"), AdmissionLimits(2, 100, 1000, 60))
    assert err.value.code == "queue_full" and err.value.http_status == 503
    with pytest.raises(Rejected) as err:
        for _ in range(3):
            store.admit(new(owner="bob", accelerator="A100"), AdmissionLimits(100, 100, 2, 60))
    assert err.value.code == "rate_limited"


def test_the_sqlite_store_is_durable_and_in_wal_mode(tmp_path):
    s = SQLiteStore(tmp_path / "j.sqlite3")
    record, _ = s.admit(new(sid="durable-0001"), LIMITS)
    conn = s._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2        # FULL
    s.close()
    assert SQLiteStore(tmp_path / "j.sqlite3").get("durable-0001").state == "queued"
