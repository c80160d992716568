"""The grader's side of the conversation with the submission's process (:class:`Grading`).

Everything the submission side sends is a claim: this checks every message's place
(:class:`runner.protocol.Transcript`) and every reported output against the plan
(:mod:`runner.grader.plan`), picks after the fact which timed runs to check (against digests the child
committed to first), times a burst of calls on its own clock, and hands what it found to the
verdict as evidence (:meth:`Grading.evidence`; the rule is :mod:`runner.grader.verdict`, the
performance section's checks :mod:`runner.grader.performance`).
"""

from __future__ import annotations

import secrets
import statistics
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner import protocol
from runner.buffers import directions_of
from runner.cases import copy_seed, performance_case
from runner.challenge import ChallengeBase
from runner.grader.clock import BurstClock
from runner.digest import digest
from runner.grader.options import GradeOptions
from runner.grader.performance import TimingEvidence, performance_summary
from runner.perturb import perturb, run_generator
from runner.grader.plan import Plan, check_outputs, reference_outputs, release
from runner.policy import MAX_TIMED_RUNS
from runner.protocol import Message, ProtocolViolation, Verdict
from runner.grader.verdict import Evidence
from runner.report import Result, TestReport
from runner.sandbox.watch import Ending


class Grading(BurstClock):
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
        self.schedule: List[Dict[str, Any]] = []   # the bursts still to send
        self.bursts: List[Dict[str, Any]] = []     # the bursts sent, and what the clock said
        self.burst_setup: Dict[str, Any] = {}      # lengths, flush, drains, the grader's null
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
                         "budget_s": self.options.time_budget_s, "max_runs": MAX_TIMED_RUNS}]
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

    def _pick(self, indices: List[int], must: List[int], count: Optional[int] = None) -> List[int]:
        chosen = set(i for i in must if i in indices)
        others = [i for i in indices if i not in chosen]
        self._rng.shuffle(others)
        count = self.options.checked_runs if count is None else count
        return sorted(chosen | set(others[:max(0, count - len(chosen))]))

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
            what = (f"timed run {index}" if phase == "timed" else
                    f"call {index} of the grader's timed burst {len(self.bursts)}")
            check.message = (f"the output of {what}, on inputs changed before that run, "
                             f"was wrong (does the result depend on an earlier call, or is it "
                             f"cached?): {check.message}")
            self.sample_failures.append(check)
        if self.awaiting[phase]:
            return []
        if self.sample_failures:
            self.schedule = []
            return self._fresh()
        if phase == "timed":
            return self._burst()
        return self._next_burst()

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

    # -- what the verdict rests on ----------------------------------------------------------------
    def evidence(self, ending: Ending) -> Evidence:
        """Everything this conversation found, with how the child ended, for
        :func:`runner.grader.verdict.decide`."""
        plan = self.plan
        return Evidence(action=self.options.action, ending=ending, tampering=self.rejection,
                        internal=self.internal, tests=list(self.tests),
                        child_error=self.child_error, submit=self.transcript.submit,
                        missing=self.missing_reports(),
                        perf_left_out=None if plan.performance else plan.perf_left_out,
                        perf_reports=list(self.perf_reports),
                        sample_failures=list(self.sample_failures),
                        measure_performance=lambda: performance_summary(self.timing_evidence()))

    def timing_evidence(self) -> TimingEvidence:
        options = self.options
        return TimingEvidence(challenge=self.challenge, device=options.device, claim=self.claim,
                              clock=self.clock, perf_case=self.plan.perf_case,
                              perf_copies=self.plan.perf_copies, seed=options.seed,
                              time_budget_s=options.time_budget_s,
                              time_reference=options.time_reference,
                              checked_runs=options.checked_runs)

    def finish(self, result: Result) -> Result:
        """What this kind of grading adds to a decided result (nothing; a profile: its report)."""
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
        if (protocol.PERF_FRESH not in seen and not self.sample_failures
                and self.perf_reports and self.perf_reports[0].passed):
            return "the fresh-inputs check"
        return ""
