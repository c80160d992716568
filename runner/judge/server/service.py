"""The judge's logic, independent of HTTP: admission, the worker side of leases, the reaper
and (in a fleet) the repair of lost broker messages; :mod:`.routes` maps routes to it."""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runner.judge.accelerators import Accelerators
from runner.judge.challenge_set import ChallengeSet
from runner.judge.config import JudgeConfig
from runner.judge.rejected import Rejected
from runner.judge.server.auth import Principal, TokenRegistry
from runner.judge.server.leaderboard import SWEEP_INTERVAL_S, Leaderboard
from runner.judge.server.metrics import Metrics
from runner.judge.server.queues import Dispatcher, DramatiqDispatcher, EmbeddedDispatcher, Wakeup
from runner.judge.server.storage import open_store
from runner.judge.server.storage.records import (AdmissionLimits, CompleteOutcome, Lease,
                                                 NewSubmission, Record, Transition)
from runner.judge.server.storage.sql import SqlStore
from runner.judge.wire import TERMINAL_STATUSES, SubmitRequest
from runner.protocol import Verdict
from runner.report import STATUS_OF_VERDICT

log = logging.getLogger("runner.judge")
CUSTOM_CHALLENGE = "custom"
MAX_CLAIM_WAIT_S = 20.0
MAX_TRACKED = 50_000
PRESENCE_TTL_S = 20.0        # a worker not heard from for this long is not counted as alive
UNAVAILABLE_SHOWN_S = 3600.0  # how long a worker's "cannot take my slot" stays in /healthz
STARTUP_GRACE_S = 300.0       # a worker serve started counts as "starting" this long at most


@dataclass
class WorkerJob:
    """A lease handed to a worker, with the settings it must grade under."""

    lease: Lease
    lease_s: float
    heartbeat_s: float
    time_limit_s: float
    host_memory_bytes: int

    def to_dict(self) -> Dict[str, Any]:
        return {"submissionId": self.lease.submission_id, "lease": self.lease.lease_id,
                "attempt": self.lease.attempt, "leaseSeconds": self.lease_s,
                "heartbeatSeconds": self.heartbeat_s, "timeLimitSeconds": self.time_limit_s,
                "hostMemoryBytes": self.host_memory_bytes, "job": self.lease.job}


class JudgeService:
    def __init__(self, config: JudgeConfig, store: SqlStore, challenge_set: ChallengeSet,
                 accelerators: Accelerators, tokens: TokenRegistry,
                 dispatcher: Optional[Dispatcher] = None, wakeup: Optional[Wakeup] = None):
        self.config, self.store, self.challenge_set = config, store, challenge_set
        self.accelerators, self.tokens = accelerators, tokens
        self.wakeup = wakeup or Wakeup()
        self.dispatcher = dispatcher or EmbeddedDispatcher(self.wakeup)
        self.metrics = Metrics(store.depths, lambda: self.accelerators.names)
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._versions: Dict[str, int] = {}      # submissions changed through this process
        self._versions_lock = threading.Lock()
        self._stamps = itertools.count(1)
        lim = config.limits
        self.admission = AdmissionLimits(lim.queue_capacity, lim.max_in_flight, lim.rate_limit,
                                         lim.rate_window_s)
        self.leaderboard = Leaderboard(store, dispatch=self._dispatch, touch=self.touch)
        # workers this process started (serve): label -> (accelerator, state, reason, since),
        # state "starting" or "given up"; set by the supervisor
        self.local_workers: Dict[str, Tuple[str, str, str, float]] = {}

    # -- building one from a config ---------------------------------------------------------
    @classmethod
    def from_config(cls, config: JudgeConfig, data_dir: Path,
                    tokens: Optional[TokenRegistry] = None) -> "JudgeService":
        store = open_store(config.store_url, data_dir)
        challenge_set = ChallengeSet(config.challenge_dirs)
        accelerators = Accelerators.configured(config.accelerators, config.accelerator_map)
        tokens = tokens or TokenRegistry.from_specs(config.tokens,
                                                    open_access=not config.auth_enabled)
        wakeup = Wakeup()
        dispatcher: Dispatcher
        if config.queue.backend == "dramatiq":
            q = config.queue
            dispatcher = DramatiqDispatcher(q.redis_url, q.namespace, q.heartbeat_timeout_ms,
                                            q.maintenance_chance, wakeup)
        else:
            dispatcher = EmbeddedDispatcher(wakeup)
        return cls(config, store, challenge_set, accelerators, tokens, dispatcher, wakeup)

    # -- change notices (so that streams read the store only when something happened) ---------
    def touch(self, submission_id: str, finished: bool = False) -> None:
        with self._versions_lock:
            if len(self._versions) > MAX_TRACKED:      # forget finished ones (negative marks)
                self._versions = {k: v for k, v in self._versions.items() if v > 0}
            stamp = next(self._stamps)
            self._versions[submission_id] = -stamp if finished else stamp

    def version(self, submission_id: str) -> int:
        """A number that changes when this process stores an event of the submission (another
        API process's changes are seen by the readers' periodic re-read)."""
        with self._versions_lock:
            return self._versions.get(submission_id, 0)

    # -- users --------------------------------------------------------------------------------
    def resolve_challenge(self, principal: Principal, req: SubmitRequest) -> Tuple[str, Optional[str]]:
        """(the server's challenge folder name, or "custom"; the custom code, if any)."""
        if req.challenge is not None:
            return self.challenge_set.id_of(self.challenge_set.find(req.challenge)), None
        own = self.challenge_set.match_code(req.challenge_code or "")
        if own is not None:
            return self.challenge_set.id_of(own), None
        if principal.has("author"):
            return CUSTOM_CHALLENGE, req.challenge_code
        raise Rejected("the challenge code sent is not one of this judge's challenges, and "
                       "only tokens with the author role may send their own; send "
                       "`submission.challenge` (a number or slug) or the unmodified "
                       "challenge.py", "unknown_challenge", 403)

    def submit(self, principal: Principal, req: SubmitRequest) -> Tuple[Record, bool]:
        """Store a submission (or find the one with the same id); raises :class:`Rejected`.
        Only a stored submission is ever acknowledged."""
        if req.submission_id is not None:
            existing = self.store.get(req.submission_id)
            if existing is not None and self.may_see(principal, existing):
                return existing, False
        try:
            accelerator = self.accelerators.resolve(req.accelerator)
            challenge, code = self.resolve_challenge(principal, req)
            sub = NewSubmission(id=req.submission_id or uuid.uuid4().hex, owner=principal.name,
                                action=req.action, language=req.language,
                                accelerator=accelerator, challenge=challenge,
                                file_name=req.file_name, content=req.content,
                                seed=secrets.randbelow(2**31 - 1) + 1, challenge_code=code,
                                public=req.public)
            record, created = self.store.admit(sub, self.admission)
        except Rejected as exc:
            self.metrics.refused.labels(exc.code).inc()
            raise
        if created:
            self.touch(record.id)
            self.metrics.submissions.labels(accelerator).inc()
            self._dispatch(record.id, accelerator)
            try:
                self.note_unserved([(record.id, accelerator)])
            except Exception as exc:  # noqa: BLE001 - a note is not worth refusing a submission
                log.warning("could not check the workers for %s: %s", record.id, exc)
        return record, created

    def _dispatch(self, submission_id: str, accelerator: str) -> None:
        """Hand a stored submission to the queue; a broker that is down only delays it (the
        repair loop sends it again), it never loses it."""
        try:
            self.dispatcher.dispatch(submission_id, accelerator)
            if getattr(self.dispatcher, "uses_broker", False):
                self.store.mark_dispatched([submission_id])
        except Exception as exc:  # noqa: BLE001 - the store holds it; repair will retry
            log.warning("could not hand %s to the queue (%s); it will be sent again",
                        submission_id, exc)

    def may_see(self, principal: Principal, record: Record) -> bool:
        return record.owner == principal.name or principal.has("admin")

    # -- workers ------------------------------------------------------------------------------
    def _job(self, lease: Lease) -> WorkerJob:
        le, lim = self.config.leases, self.config.limits
        return WorkerJob(lease, le.lease_s, le.heartbeat_interval, lim.time_limit_s,
                         lim.host_memory_bytes)

    def claim(self, worker: str, accelerators: List[str], submission_id: Optional[str] = None,
              wait_s: float = 0.0) -> Optional[WorkerJob]:
        names = [self.accelerators.resolve(a) for a in accelerators]
        for name in names[:1]:
            self.store.worker_seen(worker, name, "ready")
        self.leaderboard.seen(worker, names)
        if submission_id is not None and self.leaderboard.skip_claim(worker, submission_id):
            return None
        deadline = time.monotonic() + max(0.0, min(wait_s, MAX_CLAIM_WAIT_S))
        while True:
            lease = self.store.claim(worker, names, self.config.leases.lease_s, submission_id)
            if lease is not None:
                self.touch(lease.submission_id)
                record = self.store.get(lease.submission_id)
                if record is not None and lease.attempt == 1:
                    self.metrics.queue_wait_seconds.labels(record.accelerator).observe(
                        max(0.0, (record.started or 0) - record.created))
                return self._job(lease)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or submission_id is not None or self._stop.is_set():
                return None
            self.wakeup.wait(min(remaining, 1.0))

    def heartbeat(self, submission_id: str, lease_id: str) -> bool:
        return self.store.heartbeat(submission_id, lease_id, self.config.leases.lease_s)

    # -- which workers serve which queue ------------------------------------------------------
    def presence(self, worker: str, accelerator: str, state: str, reason: str = "") -> None:
        """A worker says it is ``ready``, ``unavailable`` (``reason``: why it cannot serve) or
        ``stopped``."""
        if state not in ("ready", "unavailable", "stopped"):
            raise Rejected("`state` must be ready, unavailable or stopped")
        if not accelerator:
            raise Rejected("`accelerator` names the queue this worker serves")
        self.store.worker_seen(worker, self.accelerators.resolve(accelerator), state, reason)

    def local_worker(self, label: str, accelerator: str, state: str, reason: str = "") -> None:
        """The supervisor of ``serve`` started (``starting``) or gave up on (``given up``) a
        worker of its own."""
        self.local_workers[label] = (accelerator, state, reason, time.time())

    def workers_by_accelerator(self, now: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        """accelerator -> {"alive": [names], "starting": [...], "unavailable": [{worker,
        reason}], "silent": [{worker, seconds}]} from what the workers said (every API process
        of a fleet reads the same store) and, for ``serve``, the workers it started."""
        now = time.time() if now is None else now
        out: Dict[str, Dict[str, Any]] = {
            name: {"alive": [], "starting": [], "unavailable": [], "silent": []}
            for name in self.accelerators.names}
        said_unavailable: Dict[str, float] = {}
        for w in self.store.workers(since=now - UNAVAILABLE_SHOWN_S):
            entry = out.get(w.accelerator)
            if entry is None:
                continue
            if w.state == "unavailable":
                said_unavailable[w.name] = w.seen
            if w.state == "ready" and w.seen >= now - PRESENCE_TTL_S:
                entry["alive"].append(w.name)
            elif w.state == "ready":
                entry["silent"].append({"worker": w.name, "seconds": round(now - w.seen)})
            elif w.state == "unavailable":
                entry["unavailable"].append({"worker": w.name, "reason": w.reason})
        for label, (accelerator, state, reason, since) in sorted(self.local_workers.items()):
            entry = out.get(accelerator)
            if entry is None:
                continue
            # a worker's own word that it cannot serve ends its "starting"
            gave_up = any(name.endswith("-" + label) and seen >= since
                          for name, seen in said_unavailable.items())
            if state == "starting" and now - since < STARTUP_GRACE_S and not gave_up:
                entry["starting"].append(label)
            elif state == "given up" and not any(u["worker"].endswith("-" + label)
                                                 for u in entry["unavailable"]):
                entry["unavailable"].append({"worker": label, "reason": reason})
        return out

    @staticmethod
    def unserved_reason(accelerator: str, entry: Dict[str, Any]) -> Optional[str]:
        """Why no worker can take a submission for ``accelerator`` now (None when one can)."""
        if entry["alive"]:
            return None
        if entry["starting"]:
            return (f"waiting for a worker for {accelerator}: {', '.join(entry['starting'])} "
                    f"is starting")
        why = "; ".join(f"worker {u['worker']}: {u['reason']}" for u in entry["unavailable"][:3])
        if why:
            return f"no worker can take submissions for {accelerator}: {why}"
        if entry["silent"]:
            last = entry["silent"][0]
            return (f"no worker is serving {accelerator}: the last one ({last['worker']}) has "
                    f"not been heard from for {last['seconds']} s")
        return f"no worker is serving {accelerator}: none has connected to this judge"

    def note_unserved(self, queued: Optional[List[Tuple[str, str]]] = None) -> int:
        """Tell each queued submission that no worker can take it now, and why (once per
        reason); returns how many notes were added."""
        queued = self.store.queued() if queued is None else queued
        if not queued:
            return 0
        by_accelerator = self.workers_by_accelerator()
        wait = self.config.limits.max_queue_wait_s
        added = 0
        for sid, accelerator in queued:
            entry = by_accelerator.get(accelerator)
            reason = self.unserved_reason(accelerator, entry) if entry else None
            if reason is None:
                continue
            if self.store.note_queued(sid, f"{reason}; it waits in the queue (at most {wait:g} s, "
                                           f"then it ends `interrupted`)"):
                self.touch(sid)
                added += 1
        return added

    def add_event(self, submission_id: str, lease_id: str, status: str, output: Any) -> Optional[int]:
        if status in TERMINAL_STATUSES:
            raise Rejected("a progress event cannot have a terminal status; send the result "
                           "to /complete")
        seq = self.store.add_event(submission_id, lease_id, status, output)
        self.touch(submission_id)
        return seq

    def complete(self, submission_id: str, lease_id: str, result: Dict[str, Any]) -> CompleteOutcome:
        verdict = str(result.get("verdict") or Verdict.INTERNAL_ERROR.value)
        status = STATUS_OF_VERDICT.get(verdict, "error")
        record = self.store.get(submission_id)
        result = {**result, "status": status, "submissionId": submission_id}
        if record is not None:
            result["seed"] = record.seed
            result["attempts"] = record.attempts
        outcome = self.store.complete(submission_id, lease_id, status, verdict, result)
        self.touch(submission_id, finished=outcome.stored)
        if outcome.stored and outcome.record is not None:
            rec = outcome.record
            self.metrics.outcomes.labels(rec.accelerator, status, verdict).inc()
            self.metrics.grading_seconds.labels(rec.accelerator).observe(
                max(0.0, (rec.finished or 0) - (rec.started or 0)))
            self.leaderboard.on_complete(rec)
        elif not outcome.stored:
            self.metrics.rejected_results.labels(outcome.reason).inc()
        return outcome

    def release(self, submission_id: str, lease_id: str, reason: str) -> Optional[Transition]:
        le = self.config.leases
        t = self.store.release(submission_id, lease_id, f"the worker failed: {reason}"[:500],
                               le.max_retries, le.avoid_failed_worker_s)
        if t is not None:
            self._after_transition(t)
        return t

    def _after_transition(self, t: Transition) -> None:
        self.touch(t.submission_id, finished=t.outcome == "interrupted")
        if t.outcome == "requeued":
            self.metrics.retries.labels(t.accelerator).inc()
            self._dispatch(t.submission_id, t.accelerator)
        else:
            self.metrics.outcomes.labels(t.accelerator, "interrupted", "interrupted").inc()

    # -- background work ----------------------------------------------------------------------
    def reap_once(self) -> List[Transition]:
        le, lim = self.config.leases, self.config.limits
        done = self.store.reap(le.max_retries, le.avoid_failed_worker_s, lim.max_queue_wait_s)
        for t in done:
            log.info("reaper: %s %s (%s)", t.submission_id, t.outcome, t.reason)
            self._after_transition(t)
        self.note_unserved()
        return done

    def repair_once(self) -> int:
        """Fleet only: send again the queued submissions the broker may have lost."""
        if not getattr(self.dispatcher, "uses_broker", False):
            return 0
        q = self.config.queue
        lost = self.store.undispatched(older_than=max(q.repair_interval_s * 4,
                                                      self.config.leases.lease_s))
        for sid, acc in lost:
            self._dispatch(sid, acc)
        return len(lost)

    def _loop(self, interval: float, step) -> None:
        while not self._stop.wait(interval):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep reaping when the store hiccups
                log.warning("%s failed: %s", step.__name__, exc)

    def start(self) -> None:
        """Start the reaper (and, in a fleet, the repair loop) in background threads."""
        self._stop.clear()
        loops = [(self.config.leases.reap_interval_s, self.reap_once),
                 (SWEEP_INTERVAL_S, self.leaderboard.sweep)]
        if getattr(self.dispatcher, "uses_broker", False):
            self.repair_once()
            loops.append((self.config.queue.repair_interval_s, self.repair_once))
        for interval, step in loops:
            t = threading.Thread(target=self._loop, args=(interval, step), daemon=True,
                                 name=f"judge-{step.__name__}")
            t.start()
            self._threads.append(t)

    def release_waiters(self) -> None:
        """Shutdown has begun: long-poll claims return now instead of being cancelled."""
        self._stop.set()
        self.wakeup.notify()

    def stop(self) -> None:
        self.release_waiters()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self.dispatcher.close()
        self.store.close()

    def health(self) -> Dict[str, Any]:
        """``status`` is ``ok`` only when every accelerator's queue has a live worker;
        otherwise ``starting`` (only workers this process started are missing, and they are
        starting) or ``no_workers``, with ``problems`` saying which queue and why."""
        self.store.ping()
        workers = self.workers_by_accelerator()
        problems, starting = [], True
        for accelerator, entry in workers.items():
            reason = self.unserved_reason(accelerator, entry)
            if reason is not None:
                problems.append(reason)
                starting = starting and bool(entry["starting"])
        status = "ok" if not problems else ("starting" if starting else "no_workers")
        return {"status": status, "store": "ok", "accelerators": self.accelerators.names,
                "workers": {a: {"alive": len(e["alive"]), "alive_workers": e["alive"],
                                "starting": e["starting"], "unavailable": e["unavailable"],
                                "silent": e["silent"]} for a, e in workers.items()},
                "problems": problems,
                "auth": "on" if not self.tokens.open_access else "off",
                "queue": self.config.queue.backend}
