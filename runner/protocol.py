"""What the submission's process may say to the grader, and what the grader may answer.

The child process runs untrusted code, so every message it sends is a *claim*. This module is
the one place that says which claims exist, what each must look like, in which order they may
come, and which verdicts the child may claim for itself (only its own failures). Anything else
(an unknown kind, a verdict the child may not send, a malformed, duplicate or out-of-order
message, anything after ``done``) makes the grading ``rejected``: the submission interfered
with the grader. The parent decides every other verdict from its own checks.

Messages are JSON lines ``{"kind": ..., "payload": {...}, "tensors": [names]}`` on the report
pipe; a message that names tensors is followed on the same pipe by their raw bytes, in the
order of the names (sorted), each read as the dtype and shape the grader itself expects (the
child never says what they are, so nothing it writes is parsed beyond those bytes); commands from the parent to the child are JSON lines ``{"command": ..., ...}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from runner.policy import RETAIN_BYTES
from runner.profile_schema import valid_profile


class Verdict(str, Enum):
    ACCEPTED = "accepted"
    WRONG_ANSWER = "wrong_answer"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIME_LIMIT_EXCEEDED = "time_limit_exceeded"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    REJECTED = "rejected"            # the submission interfered with the grader
    INTERNAL_ERROR = "internal_error"
    COMPILED = "compiled"            # CUDA compiled on a machine that cannot run it
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


# verdict -> the LeetGPU-compatible status of the terminal message
STATUS_OF_VERDICT = {
    Verdict.ACCEPTED: "success",
    Verdict.COMPILED: "success",
    Verdict.WRONG_ANSWER: "error",
    Verdict.COMPILE_ERROR: "error",
    Verdict.RUNTIME_ERROR: "error",
    Verdict.REJECTED: "error",
    Verdict.INTERNAL_ERROR: "error",
    Verdict.TIME_LIMIT_EXCEEDED: "timeout",
    Verdict.MEMORY_LIMIT_EXCEEDED: "oom",
    Verdict.INTERRUPTED: "interrupted",
}

# the only verdicts the child may claim: failures of its own
CHILD_VERDICTS: FrozenSet[Verdict] = frozenset(
    {Verdict.COMPILE_ERROR, Verdict.RUNTIME_ERROR, Verdict.MEMORY_LIMIT_EXCEEDED})

INTERFERENCE = "the submission interfered with the grader"


class ProtocolViolation(Exception):
    """A message the child may not send here; the grading is ``rejected`` with this text."""


@dataclass
class Job:
    """What the submission side is told (JSON, in the job file): how to make the inputs and
    load the solution, never an expected output. Made by :func:`runner.grader.options.job_for`."""

    challenge_path: str
    solution_path: str
    language: str
    device: str
    action: str                              # "run" or "submit"
    seed: int                                # the grading seed the cases are made from
    perf_copies: int                         # rotated copies of the performance case
    nvcc_flags: List[str]
    gpu_memory_fraction: Optional[float]     # torch's allocator cap (None: the whole device)
    performance: bool = True                 # a submit runs the performance case
    retain_bytes: int = RETAIN_BYTES  # GPU memory for the outputs of timed runs
    library_path: Optional[str] = None   # CUDA: the library the trusted side built (read-only)
    build_info: Optional[Dict[str, str]] = None   # CUDA: {target, nvcc, log} of that build

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# -- message kinds (child -> parent) ----------------------------------------------------------

SANDBOX = "sandbox"          # {notes: [str]}: how the child was isolated (first message)
PROGRESS = "progress"        # {message: str}: shown to the user, never believed
READY = "ready"              # {}: the harness is up; the grading clock starts now
CASE = "case"                # {index, name, modified_inputs, guard_damage} + outputs
PERF_FIRST = "perf_first"    # the performance case, untimed: {modified_inputs, guard_damage} + outputs
TIMING = "timing"            # the child's own event timing: {samples_ms, host_us, ..., digests}
BURST_DONE = "burst_done"    # {calls}: the burst the parent times on its own clock has ended
BURST_PROBE = "burst_probe"  # {values: {output: base64}}: the bytes at the parent's positions
SAMPLE = "sample"            # {phase, index, modified_inputs, guard_damage} + outputs of one run
PERF_FRESH = "perf_fresh"    # fresh inputs in the same buffers: {modified_inputs, guard_damage} + outputs
ERROR = "error"              # {verdict, message, details}: the child's own failure
TAMPERING = "tampering"      # {message}: harness code in the child saw itself patched
INTERNAL = "internal"        # {details}: the harness in the child crashed
PROFILE = "profile"          # --action profile: {timeline, ncu} (runner/profile_schema.py);
#                              information for the user, never used for a verdict
DONE = "done"                # {}: nothing more follows

# -- commands (parent -> child) ---------------------------------------------------------------

CMD_PERF = "perf"            # {}: every functional test passed; run the performance case
CMD_TIME = "time"            # {nonce, budget_s, max_runs}: time the performance case
CMD_BURST = "burst"          # {nonce, calls, cover_cycles, sync_every, null, isolate, flush_bytes}:
#                              run calls back to back (null: the same without the solve)
CMD_PROBE = "probe"          # {positions: {output: [byte offsets]}}: those bytes of every call
CMD_REVEAL = "reveal"        # {phase, indices}: send the outputs of these runs
CMD_FRESH = "fresh"          # {}: the fresh-inputs check
CMD_PROFILE = "profile"      # {ncu, ncu_timeout_s, launch_count}: profile one call
CMD_FINISH = "finish"        # {}: say done and exit


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _str_list(v: Any, limit: int = 64) -> bool:
    return isinstance(v, list) and len(v) <= limit and all(isinstance(s, str) for s in v)


def _call_report(p: Dict[str, Any]) -> bool:
    return _str_list(p.get("modified_inputs", [])) and _str_list(p.get("guard_damage", []))


def _timing(p: Dict[str, Any]) -> bool:
    samples, digests = p.get("samples_ms"), p.get("digests")
    return (isinstance(samples, list) and 0 < len(samples) <= 100_000
            and all(_is_num(s) and s >= 0 for s in samples)
            and isinstance(digests, list) and len(digests) == len(samples)
            and all(isinstance(d, str) and len(d) <= 128 for d in digests)
            and _is_num(p.get("host_us", 0)) and isinstance(p.get("mode", ""), str)
            and _is_int(p.get("burst_sets", 1)) and p.get("burst_sets", 1) >= 1)


# kind -> (payload check, tensors expected)
SCHEMA = {
    SANDBOX: (lambda p: _str_list(p.get("notes", []), 8), False),
    PROGRESS: (lambda p: isinstance(p.get("message"), str), False),
    READY: (lambda p: True, False),
    CASE: (lambda p: _is_int(p.get("index")) and _call_report(p), True),
    PERF_FIRST: (_call_report, True),
    TIMING: (_timing, False),
    BURST_DONE: (lambda p: _is_int(p.get("calls")) and 0 < p["calls"] <= 100_000, False),
    BURST_PROBE: (lambda p: isinstance(p.get("values"), dict)
                  and all(isinstance(k, str) and isinstance(v, str) and len(v) < 16_000_000
                          for k, v in p["values"].items()), False),
    SAMPLE: (lambda p: p.get("phase") in ("timed", "burst") and _is_int(p.get("index"))
             and _call_report(p), True),
    PERF_FRESH: (_call_report, True),
    ERROR: (lambda p: isinstance(p.get("message"), str) and isinstance(p.get("details", ""), str)
            and isinstance(p.get("verdict"), str), False),
    TAMPERING: (lambda p: isinstance(p.get("message"), str), False),
    INTERNAL: (lambda p: isinstance(p.get("details", ""), str), False),
    PROFILE: (valid_profile, False),
    DONE: (lambda p: True, False),
}


@dataclass
class Message:
    kind: str
    payload: Dict[str, Any]
    tensors: Dict[str, Any] = field(default_factory=dict)


def parse(record: Any) -> Tuple[str, Dict[str, Any], Optional[List[str]]]:
    """(kind, payload, names of the tensors that follow) of one decoded JSON line, or
    ProtocolViolation."""
    if not isinstance(record, dict) or set(record) - {"kind", "payload", "tensors"}:
        raise ProtocolViolation("a message that is not {kind, payload, tensors}")
    kind, payload, tensors = record.get("kind"), record.get("payload", {}), record.get("tensors")
    if kind not in SCHEMA:
        raise ProtocolViolation(f"a message of unknown kind {str(kind)[:40]!r}")
    if not isinstance(payload, dict):
        raise ProtocolViolation(f"a {kind!r} message whose payload is not an object")
    check, with_tensors = SCHEMA[kind]
    try:
        ok = check(payload)
    except Exception:  # noqa: BLE001 - any surprise in an untrusted payload is malformed
        ok = False
    if not ok:
        raise ProtocolViolation(f"a malformed {kind!r} message")
    if tensors is not None and (not with_tensors or not _str_list(tensors, 64)
                                or tensors != sorted(set(tensors))):
        raise ProtocolViolation(f"a {kind!r} message with unexpected tensors")
    return kind, payload, tensors


def child_verdict(payload: Dict[str, Any]) -> Verdict:
    """The verdict an ``error`` message claims, if the child may claim it."""
    try:
        verdict = Verdict(payload.get("verdict"))
    except ValueError:
        raise ProtocolViolation(f"an error message claiming the unknown verdict "
                                f"{str(payload.get('verdict'))[:40]!r}") from None
    if verdict not in CHILD_VERDICTS:
        raise ProtocolViolation(f"an error message claiming the verdict {verdict.value!r}, "
                                f"which only the grader decides")
    return verdict


class Transcript:
    """Checks the order of the child's messages against what the grading asked for.

    ``expected_cases`` case reports come first, in order; then (submit, and only once the
    parent has sent ``perf`` after checking them) ``perf_first``; then only answers to the
    parent's commands; an ``error`` may come at any point after ``ready``
    and is followed only by ``done``; nothing may follow ``done``.
    """

    def __init__(self, expected_cases: int, submit: bool):
        self.expected_cases = expected_cases
        self.submit = submit
        self.seen: List[str] = []
        self.cases = 0
        self.done = False
        self.failed = False           # an error message arrived
        self.awaiting: Dict[str, int] = {}   # reply kind -> how many the parent asked for

    def expect(self, kind: str, count: int = 1) -> None:
        """The parent sent a command whose answer is ``count`` messages of ``kind``."""
        self.awaiting[kind] = self.awaiting.get(kind, 0) + count

    def admit(self, kind: str, payload: Dict[str, Any]) -> None:
        """Raise ProtocolViolation unless ``kind`` may come now."""
        if self.done:
            raise ProtocolViolation(f"a {kind!r} message after 'done'")
        if kind == PROGRESS:
            return
        if kind == SANDBOX:
            if self.seen:
                raise ProtocolViolation("a second 'sandbox' message, or one out of place")
        elif not self.seen:
            raise ProtocolViolation(f"a {kind!r} message before the harness started")
        elif kind == READY:
            if self.seen != [SANDBOX]:
                raise ProtocolViolation("a 'ready' message out of place")
        elif kind in (DONE, INTERNAL):
            pass
        elif READY not in self.seen:
            raise ProtocolViolation(f"a {kind!r} message before the harness was ready")
        elif self.failed:
            raise ProtocolViolation(f"a {kind!r} message after an error was reported")
        elif kind in (ERROR, TAMPERING):
            self.failed = True
        elif kind == CASE:
            if payload.get("index") != self.cases or self.cases >= self.expected_cases:
                raise ProtocolViolation(f"a result for test {payload.get('index')} where the "
                                        f"result for test {self.cases} was due")
            self.cases += 1
        elif kind == PERF_FIRST:
            if (not self.submit or self.cases != self.expected_cases or PERF_FIRST in self.seen
                    or self.awaiting.get(PERF_FIRST, 0) < 1):
                raise ProtocolViolation("a 'perf_first' message out of place")
            self.awaiting[PERF_FIRST] -= 1
        elif self.awaiting.get(kind, 0) > 0:
            self.awaiting[kind] -= 1
        else:
            raise ProtocolViolation(f"a {kind!r} message the grader did not ask for")
        if kind == DONE:
            self.done = True
        self.seen.append(kind)

    @property
    def outstanding(self) -> int:
        return sum(self.awaiting.values())
