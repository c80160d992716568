"""A leaderboard's entries: the candidates' table and states, a result's timing, and the order
entries rank in (:mod:`runner.judge.server.leaderboard` decides and verifies them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

from runner.protocol import Verdict

VERIFYING, RANKED, HELD, REJECTED, UNCHANGED, REMOVED = (
    "verifying", "ranked", "held", "rejected", "unchanged", "removed")
RETRYABLE_VERDICTS = (Verdict.INTERRUPTED.value, Verdict.INTERNAL_ERROR.value)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS lb_candidates (
        submission_id TEXT PRIMARY KEY,
        challenge TEXT NOT NULL,
        accelerator TEXT NOT NULL,
        language TEXT NOT NULL,
        owner TEXT NOT NULL,
        submitted DOUBLE PRECISION NOT NULL,
        worker TEXT,
        timed INTEGER NOT NULL,
        median_ms DOUBLE PRECISION,
        gbps DOUBLE PRECISION,
        bandwidth_fraction DOUBLE PRECISION,
        floor_fraction DOUBLE PRECISION,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        verification_id TEXT,
        verify_worker TEXT,
        verify_verdict TEXT,
        v_timed INTEGER,
        v_median_ms DOUBLE PRECISION,
        v_gbps DOUBLE PRECISION,
        v_bandwidth_fraction DOUBLE PRECISION,
        v_floor_fraction DOUBLE PRECISION,
        decided DOUBLE PRECISION,
        updated DOUBLE PRECISION NOT NULL,
        reviewed_by TEXT)""",
    "CREATE INDEX IF NOT EXISTS lb_board ON lb_candidates (challenge, accelerator, state)",
    "CREATE INDEX IF NOT EXISTS lb_verification ON lb_candidates (verification_id)",
]

CAND_COLUMNS = ("submission_id, challenge, accelerator, language, owner, submitted, worker, "
                "timed, median_ms, gbps, bandwidth_fraction, floor_fraction, state, reason, "
                "verification_id, verify_worker, verify_verdict, v_timed, v_median_ms, v_gbps, "
                "v_bandwidth_fraction, v_floor_fraction, decided, updated, reviewed_by")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Timing:
    """What a result says about its time (read defensively: the grader's result may change)."""

    timed: bool
    median_ms: Optional[float] = None
    gbps: Optional[float] = None
    bandwidth_fraction: Optional[float] = None
    floor_fraction: Optional[float] = None
    corroborated: bool = True     # the grader's own clock agreed with the timed runs

    @classmethod
    def of(cls, result: Optional[Dict[str, Any]]) -> "Timing":
        perf = (result or {}).get("performance")
        if not isinstance(perf, dict):
            return cls(False)
        solution = perf.get("solution") if isinstance(perf.get("solution"), dict) else {}
        median = _number(solution.get("median_ms"))
        timed = bool(perf.get("timed")) and median is not None and median > 0
        if not timed:
            return cls(False)
        floor = _number(perf.get("floor_fraction"))
        if floor is None and isinstance(perf.get("floor"), dict):
            floor = _number(perf["floor"].get("fraction"))
        clock = perf.get("clock") if isinstance(perf.get("clock"), dict) else {}
        return cls(True, median, _number(perf.get("gbps")), _number(perf.get("bandwidth_fraction")),
                   floor, clock.get("agrees") is not False)


@dataclass
class Candidate:
    submission_id: str
    challenge: str
    accelerator: str
    language: str
    owner: str
    submitted: float
    worker: Optional[str]
    timed: bool
    median_ms: Optional[float]
    gbps: Optional[float]
    bandwidth_fraction: Optional[float]
    floor_fraction: Optional[float]
    state: str
    reason: str
    verification_id: Optional[str]
    verify_worker: Optional[str]
    verify_verdict: Optional[str]
    v_timed: Optional[bool]
    v_median_ms: Optional[float]
    v_gbps: Optional[float]
    v_bandwidth_fraction: Optional[float]
    v_floor_fraction: Optional[float]
    decided: Optional[float]
    updated: float
    reviewed_by: Optional[str]

    @classmethod
    def from_row(cls, row) -> "Candidate":
        values = list(row)
        values[7] = bool(values[7])
        values[17] = None if values[17] is None else bool(values[17])
        return cls(*values)

    @property
    def rank_ms(self) -> Optional[float]:
        """The figure a ranked entry is ranked by: the verification's median."""
        return self.v_median_ms if self.timed else None

    @property
    def disagreement(self) -> Optional[float]:
        """max/min - 1 of the two medians, when both exist."""
        if self.median_ms and self.v_median_ms:
            lo, hi = sorted((self.median_ms, self.v_median_ms))
            return hi / lo - 1.0
        return None

    def to_dict(self, rank: Optional[int] = None) -> Dict[str, Any]:
        ranked = self.state == RANKED
        return {
            "rank": rank, "owner": self.owner, "language": self.language,
            "state": self.state, "timed": self.timed,
            # the figures an entry is shown and ranked by: the verification run's, once there
            "medianMs": self.v_median_ms if ranked and self.timed else self.median_ms,
            "gbps": self.v_gbps if ranked and self.v_gbps is not None else self.gbps,
            "floorFraction": (self.v_floor_fraction if ranked and self.v_floor_fraction is not None
                              else self.floor_fraction),
            "bandwidthFraction": (self.v_bandwidth_fraction
                                  if ranked and self.v_bandwidth_fraction is not None
                                  else self.bandwidth_fraction),
            "submittedMedianMs": self.median_ms, "verifiedMedianMs": self.v_median_ms,
            "disagreement": self.disagreement, "when": self.submitted,
            "submissionId": self.submission_id, "verificationId": self.verification_id,
            "worker": self.worker, "verifyWorker": self.verify_worker,
            "verifyVerdict": self.verify_verdict, "reason": self.reason,
            "decided": self.decided, "reviewedBy": self.reviewed_by,
            "challenge": self.challenge, "accelerator": self.accelerator,
        }


def better(a_timed: bool, a_ms: Optional[float], b: Candidate) -> bool:
    """Is a result (timed, median) better than the standing candidate ``b``?"""
    if not a_timed:
        return False                 # an untimed result never beats anything already there
    if not b.timed:
        return True
    b_ms = b.v_median_ms if b.state == RANKED and b.v_median_ms else b.median_ms
    return b_ms is None or (a_ms is not None and a_ms < b_ms)


def fmt_ms(ms: Optional[float]) -> str:
    return "not timed" if ms is None else f"{ms * 1e3:.1f} us"
