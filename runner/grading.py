"""The grader's side of the conversation with the submission's process (:class:`Grading`).

Everything the submission side sends is a claim: this checks every message's place
(:class:`runner.protocol.Transcript`) and every reported output against the plan
(:mod:`runner.plan`), picks after the fact which timed runs to check (against digests the child
committed to first), times a burst of calls on its own clock, and decides the verdict (the
performance section's checks are :mod:`runner.performance`).
"""

from __future__ import annotations

import base64
import math
import secrets
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import torch

from runner import devices, protocol
from runner.buffers import directions_of
from runner.cases import copy_seed, performance_case
from runner.challenge import ChallengeBase
from runner.digest import digest
from runner.performance import performance_summary
from runner.perturb import perturb, run_generator
from runner.plan import Plan, check_outputs, reference_outputs, release
from runner.protocol import BURST_FLUSH_BYTES, Message, ProtocolViolation, Verdict
from runner.report import Result, TestReport
from runner.truth import RULE
from runner.sandbox.watch import ChildOutcome
from runner.timing import L2Flusher, LaunchCover

if TYPE_CHECKING:
    from runner.grade import GradeOptions

BURST_COVER_S = 1e-3         # the spin the burst starts behind
PROBE_BYTES = 384 * 1024     # the burst probe's bytes at most (512 KiB as base64, one line)


NOT_RUN_AFTER_FAILURE = ("the performance test was not run: a functional test failed (fix "
                         "that first; submit again to be timed)")


def _fail(result: Result, verdict: Verdict, message: str, details: str = "") -> Result:
    result.verdict, result.message, result.details = verdict.value, message, details
    return result


class Grading:
    """The parent's side of the conversation with the submission's process.

    It checks every message against :class:`runner.protocol.Transcript`, compares every
    reported output with the reference, and drives the performance phase: the child's own
    event timing of runs on perturbed inputs (then some of those runs, picked now, are
    checked against the digests the child sent first), a burst of calls the parent times on
    its own clock (checked the same way), and the fresh-inputs check.
    """

    def __init__(self, challenge: ChallengeBase, plan: Plan, options: GradeOptions,
                 compile_only: bool = False):
        self.challenge, self.plan, self.options = challenge, plan, options
        self.compile_only = compile_only      # CUDA without a GPU: "compiled" is all there is
        self.timing_enabled = options.action == "submit" and (options.device.type == "cuda"
                                                              or options.time_on_cpu)
        self.directions = directions_of(challenge.get_solve_signature())
        self.transcript = protocol.Transcript(len(plan.cases),
                                              options.action == "submit" and plan.performance)
        self.tests: List[TestReport] = []
        self.perf_reports: List[TestReport] = []
        self.sample_failures: List[TestReport] = []
        self.child_error: Optional[Tuple[Verdict, str, str]] = None
        self.rejection: Optional[str] = None
        self.internal: Optional[str] = None
        self.claim: Optional[Dict[str, Any]] = None
        self.clock: Optional[Dict[str, Any]] = None
        self.nonces = {"timed": secrets.randbits(62), "burst": secrets.randbits(62)}
        self.commitments: Dict[str, Dict[int, str]] = {"timed": {}, "burst": {}}
        self.awaiting: Dict[str, set] = {"timed": set(), "burst": set()}
        self.burst_sent_at = self.burst_done_at = self.probe_sent_at = 0.0
        self.burst_seconds = 0.0
        self.burst_calls = 0
        self.child_burst: Dict[str, float] = {}
        self.cover_s = 0.0
        self.timing_sensitive = False
        self.positions: Dict[str, List[int]] = {}
        self.probed: Dict[str, torch.Tensor] = {}
        self._bases: Dict[int, Dict[str, Any]] = {}
        self._rng = secrets.SystemRandom()

    # -- the conversation ----------------------------------------------------------------------
    def expected_tensors(self, kind: str, payload: Dict[str, Any]) -> Dict[str, Tuple[torch.dtype, Tuple[int, ...]]]:
        """The outputs a message carries, as the plan knows them (dtype, shape): the child's
        raw bytes are read as these and nothing else."""
        if kind == protocol.CASE:
            index = payload.get("index")
            if not isinstance(index, int) or not 0 <= index < len(self.plan.expected):
                raise ProtocolViolation(f"outputs of a test case that does not exist ({str(index)[:20]})")
            outputs = self.plan.expected[index]
        elif kind in (protocol.PERF_FIRST, protocol.SAMPLE):
            outputs = self.plan.perf_expected
        elif kind == protocol.PERF_FRESH:
            outputs = self.plan.fresh_expected
        else:
            outputs = {}
        if outputs is None:
            raise ProtocolViolation(f"a {kind!r} message in a grading without a performance case")
        return {name: (t.dtype, tuple(t.shape)) for name, t in outputs.items()}

    def on_message(self, message: Message, received_at: float) -> List[Dict[str, Any]]:
        kind, payload, tensors = message.kind, message.payload, message.tensors
        self.transcript.admit(kind, payload)
        if kind == protocol.CASE:
            name, case = self.plan.cases[payload["index"]]
            self.tests.append(check_outputs(self.challenge, name, case, payload, tensors,
                                            self.plan.expected[payload["index"]]))
            if self.transcript.submit and self.transcript.cases == len(self.plan.cases):
                return self._after_cases()
        elif kind == protocol.PERF_FIRST:
            self.perf_reports.append(check_outputs(self.challenge, "performance",
                                                   self.plan.perf_case, payload, tensors,
                                                   self.plan.perf_expected))
            if self.timing_enabled and self.perf_reports[0].passed:
                self.transcript.expect(protocol.TIMING)
                return [{"command": protocol.CMD_TIME, "nonce": self.nonces["timed"],
                         "budget_s": self.options.time_budget_s, "max_runs": 1000}]
            return self._fresh()
        elif kind == protocol.TIMING:
            return self._on_timing(payload)
        elif kind == protocol.SAMPLE:
            return self._on_sample(payload, tensors)
        elif kind == protocol.BURST_DONE:
            return self._on_burst_done(payload, received_at)
        elif kind == protocol.BURST_PROBE:
            return self._on_burst_probe(payload, received_at)
        elif kind == protocol.PERF_FRESH:
            check = check_outputs(self.challenge, "performance (fresh inputs)",
                                  self.plan.fresh_case, payload, tensors, self.plan.fresh_expected)
            if not check.passed:
                check.message = ("the result did not follow new inputs written into the same "
                                 "buffers (is an answer cached by shape, by pointer or from an "
                                 "earlier call?): " + check.message)
                self.perf_reports.append(check)
            return [{"command": protocol.CMD_FINISH}]
        elif kind == protocol.ERROR:
            verdict = (Verdict.COMPILED if self.compile_only and payload.get("verdict") == "compiled"
                       else protocol.child_verdict(payload))
            self.child_error = (verdict, payload["message"][:2000], payload.get("details", "")[-20000:])
        elif kind == protocol.TAMPERING:
            self.rejection = f"{protocol.INTERFERENCE}: {payload['message'][:500]}"
        elif kind == protocol.INTERNAL:
            self.internal = payload.get("details", "")[-20000:]
        return []

    def _after_cases(self) -> List[Dict[str, Any]]:
        """The functional tests are in: the performance case only when every one passed (a
        wrong answer is not made any less wrong by minutes of the performance case)."""
        if any(not t.passed for t in self.tests):
            return [{"command": protocol.CMD_FINISH}]
        self.transcript.expect(protocol.PERF_FIRST)
        return [{"command": protocol.CMD_PERF}]

    def _fresh(self) -> List[Dict[str, Any]]:
        self.transcript.expect(protocol.PERF_FRESH)
        return [{"command": protocol.CMD_FRESH}]

    def _reveal(self, phase: str, indices: List[int]) -> List[Dict[str, Any]]:
        self.awaiting[phase] = set(indices)
        self.transcript.expect(protocol.SAMPLE, len(indices))
        return [{"command": protocol.CMD_REVEAL, "phase": phase, "indices": sorted(indices)}]

    def _pick(self, indices: List[int], must: List[int]) -> List[int]:
        chosen = set(i for i in must if i in indices)
        others = [i for i in indices if i not in chosen]
        self._rng.shuffle(others)
        return sorted(chosen | set(others[:max(0, self.options.checked_runs - len(chosen))]))

    def _on_timing(self, payload: Dict[str, Any]) -> List[Dict[str, Any]]:
        runs = payload.get("run_ids")
        samples = payload["samples_ms"]
        if (not isinstance(runs, list) or len(runs) != len(samples) or len(set(runs)) != len(runs)
                or not all(isinstance(r, int) and 0 <= r < 1_000_000 for r in runs)):
            raise ProtocolViolation("a 'timing' message whose runs do not match its samples")
        self.claim = payload
        self.commitments["timed"] = dict(zip(runs, payload["digests"]))
        median = statistics.median(samples)
        at_median = min(range(len(samples)), key=lambda k: abs(samples[k] - median))
        return self._reveal("timed", self._pick(runs, [runs[at_median], runs[-1]]))

    def _on_sample(self, payload: Dict[str, Any], tensors: Dict[str, torch.Tensor]):
        phase, index = payload["phase"], payload["index"]
        if index not in self.awaiting[phase]:
            raise ProtocolViolation(f"outputs of {phase} run {index}, which were not asked for")
        self.awaiting[phase].discard(index)
        if not self._committed(phase, index, tensors):
            raise ProtocolViolation(f"the outputs sent for {phase} run {index} are not the ones "
                                    f"the submission committed to when the run ended")
        case, expected = self._run_case(phase, index)
        check = check_outputs(self.challenge, "performance", case, payload, tensors, expected)
        if not check.passed:
            what = "timed run" if phase == "timed" else "call of the grader's timed burst"
            check.message = (f"the output of {what} {index}, on inputs changed before that run, "
                             f"was wrong (does the result depend on an earlier call, or is it "
                             f"cached?): {check.message}")
            self.sample_failures.append(check)
        if self.awaiting[phase]:
            return []
        if phase == "timed":
            if self.sample_failures:
                return self._fresh()
            return self._burst()
        self._finish_clock()
        return self._fresh()

    def _burst(self) -> List[Dict[str, Any]]:
        median_s = statistics.median(self.claim["samples_ms"]) / 1e3
        per_call = max(median_s, self._floor_s(), 1e-6) + self._flush_s()
        calls = int(min(protocol.MAX_BURST_CALLS,
                        max(16, math.ceil(self.options.burst_s / per_call))))
        self.cover_s, cycles = _cover(self.options.device, BURST_COVER_S)
        self.transcript.expect(protocol.BURST_DONE)
        self.timing_sensitive = True
        self.burst_sent_at = time.perf_counter()
        # a solve whose work outlived the current stream in the timed runs (the timer's
        # "device-sync" mode) gets the device drained before each input copy is reused
        sync_every = self.plan.perf_copies if self.claim.get("mode") == "device-sync" else 0
        return [{"command": protocol.CMD_BURST, "nonce": self.nonces["burst"], "calls": calls,
                 "cover_cycles": cycles, "sync_every": sync_every}]

    def _on_burst_done(self, payload: Dict[str, Any], received_at: float):
        calls = payload["calls"]
        if calls > protocol.MAX_BURST_CALLS:
            raise ProtocolViolation("a burst that reports more calls than were asked")
        self.burst_calls = calls
        self.burst_done_at = received_at
        self.child_burst = {k: float(payload[k]) for k in ("enqueue_s", "wall_s")
                            if isinstance(payload.get(k), (int, float))}
        # which bytes of every call's outputs must come back: named only now, after the burst;
        # as many as keep the probe's line well under the report channel's limit
        outputs = self.plan.perf_expected or {}
        per_output = max(4, min(64, PROBE_BYTES // max(1, calls * len(outputs))))
        self.positions = {}
        for name, expected in outputs.items():
            nbytes = expected.numel() * expected.element_size()
            self.positions[name] = sorted(self._rng.sample(range(nbytes), min(nbytes, per_output)))
        self.transcript.expect(protocol.BURST_PROBE)
        self.probe_sent_at = time.perf_counter()
        return [{"command": protocol.CMD_PROBE, "calls": calls, "positions": self.positions}]

    def _on_burst_probe(self, payload: Dict[str, Any], received_at: float):
        self.burst_seconds = received_at - self.burst_sent_at
        self.timing_sensitive = False
        probed = {}
        for name, positions in self.positions.items():
            try:
                raw = base64.b64decode(payload["values"][name], validate=True)
            except (KeyError, ValueError, TypeError):
                raise ProtocolViolation("a burst probe that does not hold the bytes asked for") from None
            if len(raw) != self.burst_calls * len(positions):
                raise ProtocolViolation("a burst probe that does not hold the bytes asked for")
            probed[name] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(
                self.burst_calls, len(positions))
        self.probed = probed
        calls = list(range(self.burst_calls))
        return self._reveal("burst", self._pick(calls, [calls[-1]]))

    def _committed(self, phase: str, index: int, tensors: Dict[str, torch.Tensor]) -> bool:
        """Whether revealed outputs match the commitment: the digest sent with the timing, or
        the bytes probed right after the burst."""
        if phase == "timed":
            return digest(tensors) == self.commitments["timed"].get(index)
        for name, positions in self.positions.items():
            got = tensors.get(name)
            if got is None:
                return False
            flat = got.contiguous().view(-1).view(torch.uint8)
            if flat.numel() <= (max(positions) if positions else -1):
                return False
            if not torch.equal(flat[torch.tensor(positions, dtype=torch.long)],
                               self.probed[name][index]):
                return False
        return True

    # -- the inputs of one timed run, as the child must have had them ------------------------------
    def _run_case(self, phase: str, index: int) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
        copy = index % self.plan.perf_copies
        if copy not in self._bases:
            self._bases[copy] = performance_case(self.challenge, copy_seed(self.options.seed, copy))
        base = self._bases[copy]
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in base.items()}
        perturb(self.challenge, args, base, self.directions,
                run_generator(self.options.device, self.nonces[phase], index))
        return release(args), reference_outputs(self.challenge, args, self.directions)

    # -- the parent's clock and physics --------------------------------------------------------
    def _flush_s(self) -> float:
        """How long the burst's flush of each call takes here (0 on the CPU)."""
        ceiling = devices.ceiling(self.options.device)
        return BURST_FLUSH_BYTES / (ceiling.gbps * 1e9) if ceiling else 0.0

    def _floor_s(self) -> float:
        nbytes = self.challenge.bytes_moved(self.plan.perf_case) if self.plan.perf_case else None
        ceiling = devices.ceiling(self.options.device)
        if not nbytes or not ceiling:
            return 0.0
        return nbytes / (ceiling.gbps * 1e9)

    def _overhead_s(self) -> float:
        """What each call of the burst costs besides the call itself, measured here, on this
        device, with the child's own code: its L2 flush and its input perturbation."""
        device = self.options.device
        base = self._bases.get(0) or performance_case(self.challenge, copy_seed(self.options.seed, 0))
        self._bases[0] = base
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in base.items()}
        probe = min(max(self.burst_calls, 16), 200)   # long enough to settle, as the burst is
        flush = L2Flusher(device, BURST_FLUSH_BYTES) if device.type == "cuda" else (lambda: None)
        generator = torch.Generator(device=device)

        def prepare_all():
            for i in range(probe):
                flush()
                perturb(self.challenge, args, base, self.directions,
                        run_generator(device, 1, i, generator))

        prepare_all()    # warm-up
        return min(_device_seconds(prepare_all, device) for _ in range(3)) / probe

    def _finish_clock(self) -> None:
        calls = self.burst_calls
        overhead = self._overhead_s()
        per_call = max(0.0, (self.burst_seconds - self.cover_s) / calls - overhead)
        self.clock = {"calls": calls, "seconds": self.burst_seconds,
                      "child_says": self.child_burst,
                      "overhead_per_call_ms": overhead * 1e3, "cover_ms": self.cover_s * 1e3,
                      "per_call_ms": per_call * 1e3,
                      # where the fixed cost of a burst goes, for people reading the result:
                      # the command to the burst's report, and the probe's round trip
                      "to_done_ms": (self.burst_done_at - self.burst_sent_at) * 1e3,
                      "probe_ms": (self.burst_sent_at + self.burst_seconds
                                   - self.probe_sent_at) * 1e3}


    # -- the verdict ---------------------------------------------------------------------------
    def verdict(self, outcome: ChildOutcome, result: Result) -> Result:
        if self.rejection:
            return _fail(result, Verdict.REJECTED, self.rejection)
        if outcome.verdict == Verdict.REJECTED.value:
            return _fail(result, Verdict.REJECTED, outcome.message, outcome.details)
        if self.internal is not None:
            return _fail(result, Verdict.INTERNAL_ERROR,
                         "the grader failed inside the submission process (a bug in the "
                         "harness, or your code broke its internals)", self.internal)
        result.tests = list(self.tests)
        failed = [t for t in self.tests if not t.passed]
        if failed:
            first = failed[0]
            if self.transcript.submit:
                result.performance = {"timed": False, "run": False,
                                      "reason": NOT_RUN_AFTER_FAILURE}
            return _fail(result, Verdict.WRONG_ANSWER,
                         f"{len(failed)} of {len(self.tests)} tests failed; first: {first.name} "
                         f"({', '.join(f'{k}={v}' for k, v in first.params.items())}): "
                         f"{first.message.splitlines()[0]}")
        if self.child_error is not None:
            verdict, message, details = self.child_error
            return _fail(result, verdict, message, details)
        if not outcome.finished:
            return _fail(result, Verdict(outcome.verdict or Verdict.RUNTIME_ERROR.value),
                         outcome.message, outcome.details)
        missing = self.missing_reports()
        if missing:
            return _fail(result, Verdict.REJECTED,
                         f"{protocol.INTERFERENCE}: the submission's process said it was done "
                         f"without reporting {missing}")
        if self.options.action == "submit" and not self.plan.performance:
            result.performance = {"timed": False, "reason": self.plan.perf_left_out}
        elif self.options.action == "submit":
            reports = self.sample_failures + self.perf_reports
            bad = [r for r in reports if not r.passed]
            result.tests.append(bad[0] if bad else self.perf_reports[0])
            if bad:
                return _fail(result, Verdict.WRONG_ANSWER,
                             f"performance test: {bad[0].message.splitlines()[0]}")
            summary = performance_summary(self, result)
            if isinstance(summary, str):
                return _fail(result, Verdict.REJECTED, summary)
            result.performance = summary
        result.message = ("example test passed" if self.options.action == "run"
                          else f"all {len(result.tests)} tests passed")
        ruled = [t.name for t in result.tests if t.passed and RULE in t.message]
        if ruled:
            result.notes.append(
                f"the rule '{RULE}' was used on {', '.join(ruled)}: there the float32 reference "
                f"itself misses the tolerance against the float64 answer, and your output was "
                f"at least as close to that answer as the reference is (the test's message says "
                f"by how much)")
        return result

    def missing_reports(self) -> str:
        """What the submission side should have reported but did not ('' when complete): a
        forged "done" message cannot stand in for results."""
        if self.transcript.cases != len(self.plan.cases):
            return f"results for {len(self.plan.cases) - self.transcript.cases} test(s)"
        if self.options.action != "submit" or not self.plan.performance:
            return ""
        seen = self.transcript.seen
        if protocol.PERF_FIRST not in seen:
            return "the performance test's results"
        if self.transcript.outstanding:
            return "everything the grader asked for in the performance test"
        if protocol.PERF_FRESH not in seen and not self.sample_failures and self.perf_reports[0].passed:
            return "the fresh-inputs check"
        return ""



def _cover(device: torch.device, seconds: float) -> Tuple[float, int]:
    """(its measured length, its cycles) of a spin kernel of about ``seconds`` on ``device``:
    the burst starts behind it so that its first launches queue up."""
    if device.type != "cuda":
        return 0.0, 0
    cycles = int(LaunchCover().cycles_per_us * seconds * 1e6)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    lengths = []
    for _ in range(3):
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        lengths.append(start.elapsed_time(end) / 1e3)
    return min(lengths), cycles


def _device_seconds(work: Callable[[], None], device: torch.device) -> float:
    """Wall time of ``work`` with the device drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0

