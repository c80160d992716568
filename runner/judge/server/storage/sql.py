"""The source of truth: submissions, their numbered events, leases and admission records.

Every state change is one transaction that checks the state it starts from, so a submission
moves ``queued -> running -> done`` (or back to ``queued`` on an infrastructure fault) and
reaches ``done`` exactly once: a result from a stale attempt (its lease was taken back) is
refused, and a second result for a finished submission is refused.

:class:`SqlStore` is that logic in SQL both back ends share:
:class:`runner.judge.server.storage.sqlite.SQLiteStore` (WAL mode, ``synchronous=FULL``: a
submission is on disk before it is acknowledged; the default, one machine) and
:class:`runner.judge.server.storage.postgres.PostgresStore` (a fleet). Write transactions are
serialized (SQLite's ``BEGIN IMMEDIATE``; a PostgreSQL advisory lock), which keeps the admission
checks (queue capacity, in-flight cap, rate limit) atomic.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from runner.judge.rejected import Rejected
from runner.judge.server.storage.records import (COLUMNS, DONE, QUEUED, RUNNING, SCHEMA,
                                                 AdmissionLimits, CompleteOutcome, Event, Lease,
                                                 NewSubmission, Record, Transition,
                                                 WorkerPresence)


class SqlStore:
    """The store's logic over a DB-API connection; subclasses say how to connect and lock."""

    placeholder = "?"

    # -- to be provided by a back end -------------------------------------------------------
    def _connect(self):
        """A new connection (one is kept per thread)."""
        raise NotImplementedError

    def _usable(self, conn) -> bool:
        """Whether a thread's kept connection can still be used."""
        return True

    @contextmanager
    def write_transaction(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    # -- connections: one per thread, all closed by close() -----------------------------------
    def _init_connections(self) -> None:
        self._local = threading.local()
        self._all: List[Any] = []
        self._lock = threading.Lock()

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or not self._usable(conn):
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def read_transaction(self) -> Iterator[Any]:
        yield self._conn().cursor()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
            self._all.clear()
        self._local = threading.local()

    # -- statements inside a transaction: public, since the leaderboard's tables
    #    (runner/judge/server/leaderboard.py) change in the same transactions as a submission's
    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def execute(self, cur, sql: str, params: Sequence[Any] = ()):
        cur.execute(self._q(sql), tuple(params))
        return cur

    def fetch_one(self, cur, sql: str, params: Sequence[Any] = ()):
        return self.execute(cur, sql, params).fetchone()

    def load_record(self, cur, submission_id: str) -> Optional[Record]:
        row = self.fetch_one(cur, f"SELECT {COLUMNS} FROM submissions WHERE id = ?", (submission_id,))
        return Record.from_row(row) if row else None

    def append_event(self, cur, submission_id: str, status: str, output: Any, now: float) -> int:
        row = self.fetch_one(cur, "SELECT next_seq FROM submissions WHERE id = ?", (submission_id,))
        seq = int(row[0])
        self.execute(cur, "INSERT INTO events (submission_id, seq, status, output, at) "
                          "VALUES (?, ?, ?, ?, ?)",
                     (submission_id, seq, status, json.dumps(output, default=str), now))
        self.execute(cur, "UPDATE submissions SET next_seq = ? WHERE id = ?", (seq + 1, submission_id))
        return seq

    def init_schema(self) -> None:
        with self.write_transaction() as cur:
            for statement in SCHEMA:
                self.execute(cur, statement)

    # -- admission ---------------------------------------------------------------------------
    def admit(self, sub: NewSubmission, limits: AdmissionLimits,
              now: Optional[float] = None) -> Tuple[Record, bool]:
        """Store ``sub`` with its first event (``queued``), or return the stored submission of
        the same id and owner (``created`` False). Raises :class:`Rejected`."""
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            existing = self.load_record(cur, sub.id)
            if existing is not None:
                if existing.owner != sub.owner:
                    raise Rejected("this submission id is taken: leave `submissionId` out or use "
                                   "a fresh one", "id_taken", 409)
                return existing, False
            depth = self.fetch_one(cur, "SELECT COUNT(*) FROM submissions WHERE state = ? AND "
                                        "accelerator = ?", (QUEUED, sub.accelerator))[0]
            if depth >= limits.queue_capacity:
                raise Rejected(f"queue full: {depth} submissions are waiting for "
                               f"{sub.accelerator}; try again in a minute", "queue_full", 503)
            in_flight = self.fetch_one(cur, "SELECT COUNT(*) FROM submissions WHERE owner = ? AND "
                                            "state <> ?", (sub.owner, DONE))[0]
            if in_flight >= limits.max_in_flight:
                raise Rejected(f"you have {in_flight} submissions queued or being graded (the "
                               f"limit is {limits.max_in_flight}); wait for one to finish",
                               "too_many_in_flight", 429)
            self.execute(cur, "DELETE FROM admissions WHERE at < ?", (now - limits.rate_window_s,))
            recent = self.fetch_one(cur, "SELECT COUNT(*) FROM admissions WHERE owner = ? AND at >= ?",
                                    (sub.owner, now - limits.rate_window_s))[0]
            if recent >= limits.rate_limit:
                raise Rejected(f"rate limit: {recent} submissions in the last "
                               f"{limits.rate_window_s:g} s (the limit is {limits.rate_limit}); "
                               f"slow down", "rate_limited", 429)
            self.execute(cur, "INSERT INTO admissions (owner, at) VALUES (?, ?)", (sub.owner, now))
            self.execute(cur, "INSERT INTO submissions (id, owner, action, language, accelerator, "
                              "challenge, challenge_code, file_name, content, seed, public, state, "
                              "created, next_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                         (sub.id, sub.owner, sub.action, sub.language, sub.accelerator,
                          sub.challenge, sub.challenge_code, sub.file_name, sub.content, sub.seed,
                          int(sub.public), QUEUED, now))
            self.append_event(cur, sub.id, "queued", f"queued for {sub.accelerator}: position "
                                                     f"{depth + 1}", now)
            return self.load_record(cur, sub.id), True

    # -- leases ------------------------------------------------------------------------------
    def claim(self, worker: str, accelerators: Sequence[str], lease_s: float,
              submission_id: Optional[str] = None, now: Optional[float] = None) -> Optional[Lease]:
        """Lease the oldest queued submission for one of ``accelerators`` (or exactly
        ``submission_id``), preferring one this worker has not just failed."""
        now = time.time() if now is None else now
        if not accelerators:
            return None
        with self.write_transaction() as cur:
            marks = ", ".join("?" for _ in accelerators) or "NULL"
            if submission_id is not None:
                row = self.fetch_one(cur, f"SELECT id FROM submissions WHERE id = ? AND state = ? AND "
                                          f"accelerator IN ({marks})",
                                     (submission_id, QUEUED, *accelerators))
            else:
                row = self.fetch_one(cur, f"SELECT id FROM submissions WHERE state = ? AND "
                                          f"accelerator IN ({marks}) AND NOT (avoid_worker IS NOT NULL "
                                          f"AND avoid_worker = ? AND avoid_until > ?) "
                                          f"ORDER BY created, id LIMIT 1",
                                     (QUEUED, *accelerators, worker, now))
            if row is None:
                return None
            sid = row[0]
            lease_id = secrets.token_hex(16)
            self.execute(cur, "UPDATE submissions SET state = ?, attempts = attempts + 1, "
                              "lease_id = ?, worker = ?, lease_expires = ?, started = ? WHERE id = ?",
                         (RUNNING, lease_id, worker, now + lease_s, now, sid))
            record = self.load_record(cur, sid)
            self.append_event(cur, sid, "running", f"picked up by worker {worker} (attempt "
                                                   f"{record.attempts})", now)
            return Lease(sid, lease_id, record.attempts, now + lease_s, record.job())

    def _leased(self, cur, submission_id: str, lease_id: str) -> Optional[Record]:
        record = self.load_record(cur, submission_id)
        if record is None or record.state != RUNNING or record.lease_id != lease_id:
            return None
        return record

    def heartbeat(self, submission_id: str, lease_id: str, lease_s: float,
                  now: Optional[float] = None) -> bool:
        """Extend a live lease; False when it was taken back (the worker must stop)."""
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            cur = self.execute(cur, "UPDATE submissions SET lease_expires = ? WHERE id = ? AND "
                                    "state = ? AND lease_id = ? AND lease_expires >= ?",
                               (now + lease_s, submission_id, RUNNING, lease_id, now))
            return cur.rowcount == 1

    def add_event(self, submission_id: str, lease_id: str, status: str, output: Any,
                  now: Optional[float] = None) -> Optional[int]:
        """Append a progress event for a live lease; None when the lease is stale."""
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            if self._leased(cur, submission_id, lease_id) is None:
                return None
            return self.append_event(cur, submission_id, status, output, now)

    def complete(self, submission_id: str, lease_id: str, status: str, verdict: str,
                 result: Dict[str, Any], now: Optional[float] = None) -> CompleteOutcome:
        """Store the result of a live lease with its terminal event, once."""
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            record = self.load_record(cur, submission_id)
            if record is None:
                return CompleteOutcome(False, "unknown")
            if record.state == DONE:
                return CompleteOutcome(False, "duplicate", record)
            if record.state != RUNNING or record.lease_id != lease_id:
                return CompleteOutcome(False, "stale", record)
            self._finish(cur, record, status, verdict, result, now)
            return CompleteOutcome(True, record=self.load_record(cur, submission_id))

    def _finish(self, cur, record: Record, status: str, verdict: str, result: Dict[str, Any],
                now: float) -> None:
        self.execute(cur, "UPDATE submissions SET state = ?, status = ?, verdict = ?, result = ?, "
                          "finished = ?, lease_id = NULL, lease_expires = NULL WHERE id = ?",
                     (DONE, status, verdict, json.dumps(result, default=str), now, record.id))
        self.append_event(cur, record.id, status, result, now)

    def release(self, submission_id: str, lease_id: str, reason: str, max_retries: int,
                avoid_s: float, now: Optional[float] = None) -> Optional[Transition]:
        """A worker's report of an infrastructure fault on its lease: retry or interrupt."""
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            record = self._leased(cur, submission_id, lease_id)
            if record is None:
                return None
            return self._retry_or_interrupt(cur, record, reason, max_retries, avoid_s, now)

    def _retry_or_interrupt(self, cur, record: Record, reason: str, max_retries: int,
                            avoid_s: float, now: float) -> Transition:
        retries = record.retries + 1
        if retries > max_retries:
            message = (f"interrupted: {reason}; the judge gave up after {record.attempts} "
                       f"attempts. Nothing was wrong with your submission as far as we know: "
                       f"send it again")
            result = {"status": "interrupted", "verdict": "interrupted", "message": message,
                      "submissionId": record.id, "attempts": record.attempts}
            self.execute(cur, "UPDATE submissions SET retries = ? WHERE id = ?", (retries, record.id))
            self._finish(cur, record, "interrupted", "interrupted", result, now)
            return Transition(record.id, "interrupted", reason, record.accelerator)
        self.execute(cur, "UPDATE submissions SET state = ?, retries = ?, lease_id = NULL, "
                          "lease_expires = NULL, avoid_worker = ?, avoid_until = ?, dispatched = NULL "
                          "WHERE id = ?",
                     (QUEUED, retries, record.worker, now + avoid_s, record.id))
        self.append_event(cur, record.id, "queued", f"{reason}; queued again (retry {retries} of "
                                                    f"{max_retries})", now)
        return Transition(record.id, "requeued", reason, record.accelerator)

    def reap(self, max_retries: int, avoid_s: float, max_queue_wait_s: float,
             now: Optional[float] = None) -> List[Transition]:
        """Take back expired leases (retry or interrupt) and end submissions no worker took."""
        now = time.time() if now is None else now
        done: List[Transition] = []
        with self.write_transaction() as cur:
            rows = self.execute(cur, f"SELECT {COLUMNS} FROM submissions WHERE state = ? AND "
                                     f"lease_expires < ?", (RUNNING, now)).fetchall()
            for row in rows:
                record = Record.from_row(row)
                done.append(self._retry_or_interrupt(
                    cur, record, f"worker {record.worker} stopped answering (its lease expired)",
                    max_retries, avoid_s, now))
            rows = self.execute(cur, f"SELECT {COLUMNS} FROM submissions WHERE state = ? AND "
                                     f"created < ?", (QUEUED, now - max_queue_wait_s)).fetchall()
            for row in rows:
                record = Record.from_row(row)
                reason = (f"no worker for {record.accelerator} took it within "
                          f"{max_queue_wait_s:g} s")
                done.append(self._retry_or_interrupt(cur, record, reason, -1, 0, now))
        return done

    # -- the fleet's dispatch bookkeeping ----------------------------------------------------
    def undispatched(self, older_than: float, limit: int = 100,
                     now: Optional[float] = None) -> List[Tuple[str, str]]:
        """(id, accelerator) of queued submissions not handed to the broker since
        ``older_than`` seconds ago (or never)."""
        now = time.time() if now is None else now
        with self.read_transaction() as cur:
            return [(r[0], r[1]) for r in self.execute(
                cur, "SELECT id, accelerator FROM submissions WHERE state = ? AND "
                     "(dispatched IS NULL OR dispatched < ?) ORDER BY created LIMIT ?",
                (QUEUED, now - older_than, limit)).fetchall()]

    def mark_dispatched(self, ids: Sequence[str], now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            for sid in ids:
                self.execute(cur, "UPDATE submissions SET dispatched = ? WHERE id = ? AND state = ?",
                             (now, sid, QUEUED))

    # -- reading -----------------------------------------------------------------------------
    def get(self, submission_id: str) -> Optional[Record]:
        with self.read_transaction() as cur:
            return self.load_record(cur, submission_id)

    def events(self, submission_id: str, after: int = -1, limit: int = 1000) -> List[Event]:
        with self.read_transaction() as cur:
            rows = self.execute(cur, "SELECT seq, status, output, at FROM events WHERE "
                                     "submission_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                                (submission_id, after, limit)).fetchall()
        return [Event(int(r[0]), r[1], json.loads(r[2]), float(r[3])) for r in rows]

    def list(self, owner: Optional[str] = None, limit: int = 100) -> List[Record]:
        with self.read_transaction() as cur:
            if owner is None:
                rows = self.execute(cur, f"SELECT {COLUMNS} FROM submissions ORDER BY created DESC "
                                         f"LIMIT ?", (limit,)).fetchall()
            else:
                rows = self.execute(cur, f"SELECT {COLUMNS} FROM submissions WHERE owner = ? "
                                         f"ORDER BY created DESC LIMIT ?", (owner, limit)).fetchall()
        return [Record.from_row(r) for r in rows]

    def depths(self) -> Dict[Tuple[str, str], int]:
        """(accelerator, state) -> count, for queued and running submissions."""
        with self.read_transaction() as cur:
            rows = self.execute(cur, "SELECT accelerator, state, COUNT(*) FROM submissions "
                                     "WHERE state <> ? GROUP BY accelerator, state",
                                (DONE,)).fetchall()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- workers' presence (what /healthz and the "no worker" notes read) ---------------------
    def worker_seen(self, name: str, accelerator: str, state: str, reason: str = "",
                    now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            self.execute(cur, "INSERT INTO workers (name, accelerator, state, reason, seen) VALUES "
                              "(?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET accelerator = "
                              "excluded.accelerator, state = excluded.state, reason = "
                              "excluded.reason, seen = excluded.seen",
                         (name, accelerator, state, reason[:500], now))

    def workers(self, since: float) -> List[WorkerPresence]:
        """Every worker heard from since ``since``, newest first."""
        with self.read_transaction() as cur:
            rows = self.execute(cur, "SELECT name, accelerator, state, reason, seen FROM workers "
                                     "WHERE seen >= ? ORDER BY seen DESC", (since,)).fetchall()
        return [WorkerPresence(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]

    def queued(self, limit: int = 1000) -> List[Tuple[str, str]]:
        """(id, accelerator) of the queued submissions, oldest first."""
        with self.read_transaction() as cur:
            return [(r[0], r[1]) for r in self.execute(
                cur, "SELECT id, accelerator FROM submissions WHERE state = ? ORDER BY created "
                     "LIMIT ?", (QUEUED, limit)).fetchall()]

    def note_queued(self, submission_id: str, text: str, now: Optional[float] = None) -> bool:
        """Add a ``queued`` event saying ``text`` to a submission still queued, unless one
        already says it (several API processes may notice the same thing)."""
        now = time.time() if now is None else now
        with self.write_transaction() as cur:
            record = self.load_record(cur, submission_id)
            if record is None or record.state != QUEUED:
                return False
            if self.fetch_one(cur, "SELECT 1 FROM events WHERE submission_id = ? AND output = ?",
                              (submission_id, json.dumps(text))):
                return False
            self.append_event(cur, submission_id, "queued", text, now)
            return True

    def ping(self) -> None:
        with self.read_transaction() as cur:
            self.execute(cur, "SELECT 1").fetchone()
