"""Leaderboards: each user's best verified ``submit`` per challenge x accelerator (and per
language), kept in the judge's store (SQLite or PostgreSQL, the same SQL).

A time is ranked only after a **verification run**: every accepted ``submit`` that would be its
owner's new best on a board (so every new best and every entry that enters the top 10) becomes
a *candidate*, and the same file is graded again as a submission of its own (owner
:data:`VERIFIER`) with a new secret seed, on a different worker where there is one (the
original worker is avoided for :data:`AVOID_S` seconds when another worker of that accelerator
has been seen). Then:

- the verification is accepted and its median agrees with the submitted one within
  :data:`runner.policy.LEADERBOARD_BAND` (10%: ``max/min - 1 <= 0.10``) -> ``ranked``,
  ranked by the **verification** median;
- the medians disagree, or the verification could not finish (interrupted, internal error), or
  only one of the two was timed -> ``held`` for review, both figures kept; an admin may approve
  (rank it by the verification median) or remove it;
- the verification ended with another verdict (a wrong answer under the new seed, a crash, a
  time limit) -> ``rejected``;
- an accepted submit that is not its owner's new best -> ``unchanged`` (kept for the history).

Results without a time (a CPU worker) are ranked the same way but listed apart, as "not timed".

Each decision is written, in the transaction that makes it, as a ``leaderboard`` event on the
stream of the submission that caused it (after its terminal event; ``final`` is true on the
last one): ``verifying`` when the candidate is made, then ``ranked`` / ``held`` / ``rejected``
or ``unchanged``. Every step is idempotent and keyed by submission id, and :meth:`sweep` redoes
whatever an API process that died between two steps left undone.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from runner.judge.rejected import Rejected
from runner.judge.server.candidates import (CAND_COLUMNS, HELD, RANKED, REJECTED, REMOVED,
                                            RETRYABLE_VERDICTS, SCHEMA, UNCHANGED, VERIFYING,
                                            Candidate, Timing, better, fmt_ms)
from runner.judge.server.storage.records import DONE, QUEUED, Record
from runner.judge.server.storage.sql import SqlStore
from runner.policy import CLOCK_HOLD, LEADERBOARD_BAND
from runner.protocol import Verdict

log = logging.getLogger("runner.judge")

VERIFIER = "(verifier)"       # owner of verification runs (not a valid token name in practice)
TOP = 10
AVOID_S = 120.0               # a verification avoids the original worker this long
WORKER_SEEN_S = 60.0          # a worker that claimed within this long counts as present
RECENT_WORKER_S = 600.0       # ... or that started a job within this long (a fleet's workers)
SWEEP_LOOKBACK_S = 86400.0
UNDECIDED_GRACE_S = 60.0      # a follower waits this long for an undecided submission
SWEEP_INTERVAL_S = 3.0

class Leaderboard:
    """The leaderboards of one judge; the service calls :meth:`on_complete` after every stored
    result, :meth:`seen` on every claim, and runs :meth:`sweep` in the background.

    It is given what it needs of the service: the ``store``, ``dispatch(submission_id,
    accelerator)`` to queue a verification run it stored, and ``touch(submission_id)`` to tell
    the submission's streams that an event was added."""

    def __init__(self, store: SqlStore, dispatch: Callable[[str, str], None],
                 touch: Callable[[str], None]):
        self.store = store
        self._dispatch = dispatch
        self._touch = touch
        self.band = LEADERBOARD_BAND
        self.avoid_s = AVOID_S
        self._seen: Dict[str, Tuple[frozenset, float]] = {}
        self._seen_lock = threading.Lock()
        with self.store.write_transaction() as cur:
            for statement in SCHEMA:
                self.store.execute(cur, statement)

    # -- workers present (so a verification can avoid the original one) ----------------------
    def seen(self, worker: str, accelerators: List[str]) -> None:
        with self._seen_lock:
            self._seen[worker] = (frozenset(accelerators), time.monotonic())

    def other_worker_present(self, accelerator: str, worker: Optional[str]) -> bool:
        now = time.monotonic()
        with self._seen_lock:
            for name, (accs, at) in self._seen.items():
                if name != worker and accelerator in accs and now - at < WORKER_SEEN_S:
                    return True
        with self.store.read_transaction() as cur:
            row = self.store.fetch_one(cur, "SELECT COUNT(*) FROM submissions WHERE accelerator = ? "
                                            "AND started > ? AND worker IS NOT NULL AND worker <> ?",
                                       (accelerator, time.time() - RECENT_WORKER_S, worker or ""))
        return bool(row and row[0])

    def skip_claim(self, worker: str, submission_id: str) -> bool:
        """A fleet's worker claims by id (the broker chose it): refuse a verification run meant
        for another worker; the repair loop sends it again."""
        with self.store.read_transaction() as cur:
            row = self.store.fetch_one(cur, "SELECT owner, avoid_worker, avoid_until FROM submissions "
                                            "WHERE id = ?", (submission_id,))
        return bool(row and row[0] == VERIFIER and row[1] == worker and (row[2] or 0) > time.time())

    # -- reading -----------------------------------------------------------------------------
    def _candidates(self, cur, where: str, params) -> List[Candidate]:
        rows = self.store.execute(cur, f"SELECT {CAND_COLUMNS} FROM lb_candidates WHERE {where}",
                                  params).fetchall()
        return [Candidate.from_row(r) for r in rows]

    def candidate(self, submission_id: str) -> Optional[Candidate]:
        with self.store.read_transaction() as cur:
            found = self._candidates(cur, "submission_id = ?", (submission_id,))
        return found[0] if found else None

    def board(self, challenge: str, accelerator: str, language: Optional[str] = None,
              history: int = 50) -> Dict[str, Any]:
        """The board: timed ranks (each user's best verified median), the not-timed entries
        apart, those held for review or being verified, and the latest decisions."""
        where, params = "challenge = ? AND accelerator = ?", [challenge, accelerator]
        if language:
            where, params = where + " AND language = ?", params + [language]
        with self.store.read_transaction() as cur:
            rows = self._candidates(cur, where, params)
        timed, untimed = self._ranked(rows)
        held = sorted((c for c in rows if c.state == HELD), key=lambda c: c.updated, reverse=True)
        verifying = sorted((c for c in rows if c.state == VERIFYING), key=lambda c: c.submitted)
        recent = sorted((c for c in rows if c.state != UNCHANGED),
                        key=lambda c: c.updated, reverse=True)[:history]
        return {"challenge": challenge, "accelerator": accelerator, "language": language,
                "band": self.band, "top": TOP,
                "entries": [c.to_dict(k + 1) for k, c in enumerate(timed)],
                "notTimed": [c.to_dict() for c in untimed],
                "held": [c.to_dict() for c in held],
                "verifying": [c.to_dict() for c in verifying],
                "history": [c.to_dict() for c in recent]}

    @staticmethod
    def _ranked(rows: List[Candidate]) -> Tuple[List[Candidate], List[Candidate]]:
        best: Dict[str, Candidate] = {}
        for c in rows:
            if c.state != RANKED:
                continue
            held = best.get(c.owner)
            if held is None:
                best[c.owner] = c
            elif c.timed and (not held.timed or (c.rank_ms or 0) < (held.rank_ms or 0)):
                best[c.owner] = c
            elif not c.timed and not held.timed and c.decided and held.decided and \
                    c.decided < held.decided:
                best[c.owner] = c
        timed = sorted((c for c in best.values() if c.timed),
                       key=lambda c: (c.rank_ms, c.decided or 0))
        untimed = sorted((c for c in best.values() if not c.timed), key=lambda c: c.decided or 0)
        return timed, untimed

    def awaiting(self, submission_id: str) -> bool:
        """Whether a leaderboard decision about this finished submission is still to come."""
        record = self.store.get(submission_id)
        if record is None or record.state != DONE or not self._eligible(record):
            return False
        candidate = self.candidate(submission_id)
        if candidate is None:
            return time.time() - (record.finished or 0) < UNDECIDED_GRACE_S
        return candidate.state == VERIFYING

    # -- decisions ---------------------------------------------------------------------------
    @staticmethod
    def _eligible(record: Record) -> bool:
        return (record.action == "submit" and record.verdict == Verdict.ACCEPTED
                and record.owner != VERIFIER and record.challenge != "custom")

    def on_complete(self, record: Record) -> None:
        """A result was stored: decide about it (idempotent). A failure here never fails the
        result's storing: it is logged, and :meth:`sweep` decides a few seconds later."""
        try:
            if record.owner == VERIFIER:
                self._conclude(record.id)
            elif self._eligible(record):
                self._decide(record)
        except Exception:  # noqa: BLE001
            log.exception("leaderboard: deciding about %s failed; the sweep will retry", record.id)

    def _decide(self, record: Record) -> None:
        now = time.time()
        timing = Timing.of(record.result)
        created: Optional[str] = None
        with self.store.write_transaction() as cur:
            if self._candidates(cur, "submission_id = ?", (record.id,)):
                return
            standing = self._candidates(
                cur, "challenge = ? AND accelerator = ? AND owner = ? AND language = ? AND "
                     "state IN (?, ?)",
                (record.challenge, record.accelerator, record.owner, record.language, RANKED,
                 VERIFYING))
            beaten = [c for c in standing if not better(timing.timed, timing.median_ms, c)]
            state = UNCHANGED if beaten else VERIFYING
            reason = ""
            if beaten:
                b = min(beaten, key=lambda c: c.rank_ms or c.median_ms or 0)
                reason = (f"not better than your {b.state} {record.language} entry "
                          f"({fmt_ms(b.rank_ms or b.median_ms)}, submission {b.submission_id})")
            verification_id = None
            if state == VERIFYING:
                verification_id = f"verify-{uuid.uuid4().hex}"
                avoid = record.worker if self.other_worker_present(record.accelerator,
                                                                   record.worker) else None
                self._insert_verification(cur, record, verification_id, avoid, now)
                created = verification_id
            self.store.execute(
                cur, "INSERT INTO lb_candidates (submission_id, challenge, accelerator, language, "
                     "owner, submitted, worker, timed, median_ms, gbps, bandwidth_fraction, "
                     "floor_fraction, state, reason, verification_id, decided, updated) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.challenge, record.accelerator, record.language, record.owner,
                 record.finished or now, record.worker, int(timing.timed), timing.median_ms,
                 timing.gbps, timing.bandwidth_fraction, timing.floor_fraction, state, reason,
                 verification_id, now if state == UNCHANGED else None, now))
            if state == UNCHANGED:
                event = {"final": True, "state": UNCHANGED, "message": f"the leaderboard is "
                         f"unchanged: {reason}"}
            else:
                what = (f"your {fmt_ms(timing.median_ms)} is a new best: it is verified"
                        if timing.timed else "your first accepted submit here (not timed) is "
                                             "verified")
                agree = (f"; the two medians must agree within {self.band:.0%}" if timing.timed
                         else "")
                event = {"final": False, "state": VERIFYING, "verificationId": verification_id,
                         "message": f"{what} by a second run with a new seed (submission "
                                    f"{verification_id}) before it is ranked{agree}"}
            self._add_event(cur, record, event, now)
        if created is not None:
            self._dispatch(created, record.accelerator)
        self._touch(record.id)

    def _insert_verification(self, cur, record: Record, verification_id: str,
                             avoid: Optional[str], now: float) -> None:
        s = self.store
        s.execute(cur, "INSERT INTO submissions (id, owner, action, language, accelerator, "
                       "challenge, challenge_code, file_name, content, seed, public, state, "
                       "created, next_seq, avoid_worker, avoid_until) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                  (verification_id, VERIFIER, "submit", record.language, record.accelerator,
                   record.challenge, None, record.file_name, record.content,
                   secrets.randbelow(2**31 - 1) + 1, 0, QUEUED, now, avoid,
                   now + self.avoid_s if avoid else None))
        where = f"; avoiding worker {avoid} for {self.avoid_s:g} s" if avoid else ""
        s.append_event(cur, verification_id, "queued", f"verification of {record.id} queued for "
                                                        f"{record.accelerator}{where}", now)

    def _conclude(self, verification_id: str) -> None:
        now = time.time()
        original: Optional[Record] = None
        with self.store.write_transaction() as cur:
            found = self._candidates(cur, "verification_id = ? AND state = ?",
                                     (verification_id, VERIFYING))
            run = self.store.load_record(cur, verification_id)
            if not found or run is None or run.state != DONE:
                return
            c = found[0]
            result = run.result or {}
            verdict = run.verdict or Verdict.INTERNAL_ERROR.value
            vt = Timing.of(result)
            message = str(result.get("message") or "")[:300]
            if verdict != Verdict.ACCEPTED:
                state = HELD if verdict in RETRYABLE_VERDICTS else REJECTED
                reason = (f"the verification run (new seed) ended {verdict}"
                          + (f": {message}" if message else ""))
                if state == HELD:
                    reason += "; held for review"
            elif c.timed != vt.timed:
                state = HELD
                reason = ("only one of the two runs was timed (submitted: "
                          f"{fmt_ms(c.median_ms)}, verification: {fmt_ms(vt.median_ms)}); "
                          "held for review")
            elif not c.timed:
                state, reason = RANKED, "verified correct by a second run with a new seed"
            elif not (vt.corroborated and Timing.of(
                    (self.store.load_record(cur, c.submission_id) or run).result).corroborated):
                state = HELD
                reason = ("the grader's own clock did not corroborate the time of one of the two "
                          f"runs within {CLOCK_HOLD:g}x (submitted: {fmt_ms(c.median_ms)}, "
                          "verification: "
                          f"{fmt_ms(vt.median_ms)}); held for review")
            else:
                lo, hi = sorted((c.median_ms, vt.median_ms))
                apart = hi / lo - 1.0
                if apart <= self.band:
                    state = RANKED
                    reason = (f"verified: {fmt_ms(vt.median_ms)} against "
                              f"{fmt_ms(c.median_ms)} submitted ({apart:.1%} apart, within "
                              f"{self.band:.0%})")
                else:
                    state = HELD
                    reason = (f"the medians disagree: {fmt_ms(c.median_ms)} submitted, "
                              f"{fmt_ms(vt.median_ms)} on verification ({apart:.1%} apart; the "
                              f"band is {self.band:.0%}): held for review")
            self.store.execute(
                cur, "UPDATE lb_candidates SET state = ?, reason = ?, verify_worker = ?, "
                     "verify_verdict = ?, v_timed = ?, v_median_ms = ?, v_gbps = ?, "
                     "v_bandwidth_fraction = ?, v_floor_fraction = ?, decided = ?, updated = ? "
                     "WHERE submission_id = ?",
                (state, reason, run.worker, verdict, int(vt.timed), vt.median_ms, vt.gbps,
                 vt.bandwidth_fraction, vt.floor_fraction, now, now, c.submission_id))
            original = self.store.load_record(cur, c.submission_id)
            if original is not None:
                c = self._candidates(cur, "submission_id = ?", (c.submission_id,))[0]
                self._add_event(cur, original, self._final_event(cur, c), now)
        if original is not None:
            self._touch(original.id)

    def _final_event(self, cur, c: Candidate) -> Dict[str, Any]:
        event: Dict[str, Any] = {"final": True, "state": c.state, "message": c.reason,
                                 "entry": c.to_dict()}
        if c.state == RANKED:
            rows = self._candidates(cur, "challenge = ? AND accelerator = ? AND state = ?",
                                    (c.challenge, c.accelerator, RANKED))
            timed, untimed = self._ranked(rows)
            lang_timed, _ = self._ranked([r for r in rows if r.language == c.language])
            rank = next((k + 1 for k, r in enumerate(timed) if r.submission_id == c.submission_id),
                        None)
            lang_rank = next((k + 1 for k, r in enumerate(lang_timed)
                              if r.submission_id == c.submission_id), None)
            event.update(rank=rank, of=len(timed), languageRank=lang_rank,
                         top=[r.to_dict(k + 1) for k, r in enumerate(timed[:TOP])],
                         notTimed=len(untimed))
            event["entry"]["rank"] = rank
            where = f"{c.challenge} on {c.accelerator}"
            if not c.timed:
                event["message"] = (f"on the leaderboard of {where}, listed apart as not timed "
                                     f"(no GPU measured it): {c.reason}")
            elif rank is not None:
                event["message"] = (f"ranked {rank} of {len(timed)} on {where} "
                                    f"({c.language}: {lang_rank}): {c.reason}")
            else:
                event["message"] = (f"verified, but your better entry on {where} keeps its "
                                    f"place: {c.reason}")
        return event

    def _add_event(self, cur, record: Record, output: Dict[str, Any], now: float) -> None:
        output = {"challenge": record.challenge, "accelerator": record.accelerator,
                  "language": record.language, **output}
        self.store.append_event(cur, record.id, "leaderboard", output, now)

    # -- admin -------------------------------------------------------------------------------
    def review(self, submission_id: str, action: str, admin: str, reason: str = "") -> Candidate:
        """``remove`` an entry (any state) or ``approve`` one held for review (ranked by its
        verification median, which it must have)."""
        now = time.time()
        with self.store.write_transaction() as cur:
            found = self._candidates(cur, "submission_id = ?", (submission_id,))
            if not found:
                raise Rejected(f"no leaderboard entry for submission "
                               f"{submission_id[:64]!r}", "not_found", 404)
            c = found[0]
            if action == "remove":
                if c.state == REMOVED:
                    return c
                state = REMOVED
                note = f"removed by {admin}" + (f": {reason}" if reason else "")
            elif action == "approve":
                if c.state != HELD:
                    raise Rejected(f"only an entry held for review can be approved; this "
                                   f"one is {c.state}", "conflict", 409)
                if c.timed and c.v_median_ms is None:
                    raise Rejected("this entry has no verification median to rank it by "
                                   "(its verification did not finish): remove it, and "
                                   "have its owner submit again", "conflict", 409)
                state = RANKED
                note = f"approved by {admin} after review" + (f": {reason}" if reason else "")
            else:
                raise Rejected(f"unknown action {action[:20]!r}: use remove or approve")
            full = f"{c.reason}; {note}" if c.reason else note
            self.store.execute(cur, "UPDATE lb_candidates SET state = ?, reason = ?, reviewed_by = ?, "
                                    "decided = ?, updated = ? WHERE submission_id = ?",
                               (state, full, admin, now, now, submission_id))
            c = self._candidates(cur, "submission_id = ?", (submission_id,))[0]
            original = self.store.load_record(cur, submission_id)
            if original is not None:
                self._add_event(cur, original, {**self._final_event(cur, c), "review": action}, now)
        self._touch(submission_id)
        return c

    # -- catching up (an API process that died between two steps) ------------------------------
    def sweep(self) -> int:
        """Decide accepted submits that have no decision yet, and conclude verifications whose
        run is done; returns how many it handled."""
        handled = 0
        with self.store.read_transaction() as cur:
            done_runs = [r[0] for r in self.store.execute(
                cur, "SELECT c.verification_id FROM lb_candidates c JOIN submissions s ON "
                     "s.id = c.verification_id WHERE c.state = ? AND s.state = ?",
                (VERIFYING, DONE)).fetchall()]
            undecided = [r[0] for r in self.store.execute(
                cur, "SELECT s.id FROM submissions s WHERE s.state = ? AND s.action = ? AND "
                     "s.verdict = ? AND s.owner <> ? AND s.challenge <> ? AND s.finished > ? AND "
                     "NOT EXISTS (SELECT 1 FROM lb_candidates c WHERE c.submission_id = s.id) "
                     "ORDER BY s.finished LIMIT 100",
                (DONE, "submit", "accepted", VERIFIER, "custom",
                 time.time() - SWEEP_LOOKBACK_S)).fetchall()]
        for vid in done_runs:
            self._conclude(vid)
            handled += 1
        for sid in undecided:
            record = self.store.get(sid)
            if record is not None:
                self._decide(record)
                handled += 1
        return handled

