"""The store's tables and the values read from them: the schema, a submission's states, and
the records the store takes and gives (a new submission, a record, an event, a lease, ...)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

QUEUED, RUNNING, DONE = "queued", "running", "done"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS submissions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        action TEXT NOT NULL,
        language TEXT NOT NULL,
        accelerator TEXT NOT NULL,
        challenge TEXT NOT NULL,
        challenge_code TEXT,
        file_name TEXT NOT NULL,
        content TEXT NOT NULL,
        seed BIGINT NOT NULL,
        public INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        lease_id TEXT,
        worker TEXT,
        lease_expires DOUBLE PRECISION,
        avoid_worker TEXT,
        avoid_until DOUBLE PRECISION,
        created DOUBLE PRECISION NOT NULL,
        started DOUBLE PRECISION,
        finished DOUBLE PRECISION,
        dispatched DOUBLE PRECISION,
        status TEXT,
        verdict TEXT,
        result TEXT,
        next_seq INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS submissions_queue ON submissions (state, accelerator, created)",
    "CREATE INDEX IF NOT EXISTS submissions_owner ON submissions (owner, state)",
    """CREATE TABLE IF NOT EXISTS events (
        submission_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        output TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (submission_id, seq))""",
    """CREATE TABLE IF NOT EXISTS admissions (
        owner TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS admissions_owner ON admissions (owner, at)",
    """CREATE TABLE IF NOT EXISTS workers (
        name TEXT PRIMARY KEY,
        accelerator TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        seen DOUBLE PRECISION NOT NULL)""",
]

COLUMNS = ("id, owner, action, language, accelerator, challenge, challenge_code, file_name, "
           "content, seed, public, state, attempts, retries, lease_id, worker, lease_expires, "
           "avoid_worker, avoid_until, created, started, finished, dispatched, status, verdict, "
           "result, next_seq")


@dataclass
class NewSubmission:
    id: str
    owner: str
    action: str
    language: str
    accelerator: str
    challenge: str                    # the server's challenge (folder name), or "custom"
    file_name: str
    content: str
    seed: int
    challenge_code: Optional[str] = None   # an author's own challenge.py
    public: bool = False


@dataclass
class AdmissionLimits:
    queue_capacity: int
    max_in_flight: int
    rate_limit: int
    rate_window_s: float


@dataclass
class Lease:
    """A worker's claim on one attempt of one submission."""

    submission_id: str
    lease_id: str
    attempt: int
    expires: float
    job: Dict[str, Any]


@dataclass
class Record:
    """A submission as stored."""

    id: str
    owner: str
    action: str
    language: str
    accelerator: str
    challenge: str
    challenge_code: Optional[str]
    file_name: str
    content: str
    seed: int
    public: bool
    state: str
    attempts: int
    retries: int
    lease_id: Optional[str]
    worker: Optional[str]
    lease_expires: Optional[float]
    avoid_worker: Optional[str]
    avoid_until: Optional[float]
    created: float
    started: Optional[float]
    finished: Optional[float]
    dispatched: Optional[float]
    status: Optional[str]
    verdict: Optional[str]
    result: Optional[Dict[str, Any]]
    next_seq: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "Record":
        values = list(row)
        values[10] = bool(values[10])
        values[25] = json.loads(values[25]) if values[25] else None
        return cls(*values)

    def job(self) -> Dict[str, Any]:
        """What a worker needs to grade it (no owner, no lease)."""
        return {"submissionId": self.id, "action": self.action, "language": self.language,
                "accelerator": self.accelerator, "challenge": self.challenge,
                "challengeCode": self.challenge_code, "fileName": self.file_name,
                "content": self.content, "seed": self.seed, "attempt": self.attempts}

    def summary(self) -> Dict[str, Any]:
        """What its owner sees (the result included, the lease details not)."""
        return {"submissionId": self.id, "owner": self.owner, "action": self.action,
                "language": self.language, "accelerator": self.accelerator,
                "challenge": self.challenge, "state": self.state, "attempts": self.attempts,
                "retries": self.retries, "created": self.created, "started": self.started,
                "finished": self.finished, "status": self.status, "verdict": self.verdict,
                "result": self.result}


@dataclass
class Event:
    seq: int
    status: str
    output: Any
    at: float

    def to_dict(self, submission_id: str) -> Dict[str, Any]:
        return {"status": self.status, "output": self.output, "submissionId": submission_id,
                "seq": self.seq}


@dataclass
class Transition:
    """What the reaper or a release did to one submission."""

    submission_id: str
    outcome: str          # "requeued" or "interrupted"
    reason: str
    accelerator: str = ""


@dataclass
class WorkerPresence:
    """What a worker last said about itself: ``ready`` (serving), ``unavailable`` (it could not
    take its slot; ``reason`` says why) or ``stopped``; ``seen`` is when."""

    name: str
    accelerator: str
    state: str
    reason: str
    seen: float


@dataclass
class CompleteOutcome:
    stored: bool
    reason: str = ""      # when not stored: "stale" or "duplicate"
    record: Optional[Record] = None
