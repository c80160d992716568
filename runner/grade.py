"""The trusted side of a grading: expected outputs, comparison, verdicts, the parent's clock.

The submission side (:mod:`runner.execute`) runs in a jailed child process by default
(:mod:`runner.sandbox`), or in this process with ``isolate=False``. Everything it sends is a
claim: this module holds the expected outputs, checks every output itself, picks after the
fact which timed runs to check (against digests the child committed to first), times a burst
of calls on its own clock, and refuses times the device cannot deliver. It alone decides the
verdict (:class:`Grading`).
"""

from __future__ import annotations

import base64
import math
import secrets
import statistics
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from runner import devices, languages, protocol
from runner.buffers import directions_of, prepare_call
from runner.catalog import ChallengeInfo
from runner.cases import case_bytes, copy_seed, fresh_seed, performance_case, test_cases
from runner.challenge import ChallengeBase
from runner.check import Comparison, default_comparison
from runner.digest import digest
from runner.loading import load_challenge
from runner.execute import BURST_FLUSH_BYTES, Job, MemoryChannel, execute
from runner.perturb import perturb, run_generator
from runner.protocol import Message, ProtocolViolation, Verdict
from runner.report import Result, TestReport
from runner.sandbox.parent import ChildOutcome, Limits, SandboxUnavailable, run_in_child
from runner.timing import L2Flusher, LaunchCover, time_cuda

PHYSICS_MARGIN = 1.08        # a time may imply at most this much of the measured ceiling
CLOCK_BAND = 0.5             # the grader's clock may read this much above the timed runs' mean
CLOCK_REJECT = 10.0          # ...and this many times above it is a contradiction (honest
#                              references read up to 5x on the H200: see the README)
CLOCK_SLACK_S = 3e-3         # fixed cost of a burst (pipes, wake-ups), spread over its calls
BURST_COVER_S = 1e-3         # the spin the burst starts behind


@dataclass
class GradeOptions:
    action: str = "run"                   # "run": the example test; "submit": all + timing
    device: torch.device = torch.device("cpu")
    seed: int = 0                         # grading seed; the example test ignores it
    time_budget_s: float = 3.0            # per timed implementation
    time_reference: bool = True
    nvcc_flags: List[str] = field(default_factory=list)   # extra flags for CUDA solutions
    isolate: bool = True                  # run the submission in a sandboxed child process
    limits: Limits = field(default_factory=Limits)
    progress: Callable[[str], None] = field(default=lambda message: None)
    time_on_cpu: bool = False             # time on the host clock without a GPU (tests)
    burst_s: float = 0.4                  # length of the burst the parent times itself
    checked_runs: int = 4                 # timed runs (and burst calls) whose outputs are checked


# -- comparing --------------------------------------------------------------------------------

def case_params(case: Dict[str, Any]) -> Dict[str, Any]:
    params = {k: v for k, v in case.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not params:
        params = {k: list(v.shape) for k, v in case.items() if isinstance(v, torch.Tensor)}
    return params


def reference_outputs(challenge: ChallengeBase, case: Dict[str, Any],
                      directions: Dict[str, str]) -> Dict[str, torch.Tensor]:
    """The reference's outputs for ``case``, moved to the CPU."""
    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    challenge.reference_impl(**args)
    return {name: args[name].detach().to("cpu") for name, d in directions.items() if d != "in"}


def compare_output(challenge: ChallengeBase, name: str, got: torch.Tensor,
                   expected: torch.Tensor, case: Dict[str, Any]) -> Comparison:
    """The challenge's own rule (:meth:`ChallengeBase.compare_output`, default or overridden);
    a LeetGPU-format challenge, whose base class has no such method, gets the default."""
    custom = getattr(challenge, "compare_output", None)
    if custom is not None:
        return custom(name, got, expected, case)
    return default_comparison(name, got, expected, challenge.atol, challenge.rtol)


def check_outputs(challenge: ChallengeBase, name: str, case: Dict[str, Any],
                  payload: Dict[str, Any], outputs: Dict[str, torch.Tensor],
                  expected: Dict[str, torch.Tensor]) -> TestReport:
    """Compare one call's reported outputs with ``expected``; add input and guard problems."""
    report = TestReport(name=name, passed=True, params=case_params(case))
    problems: List[str] = []
    for out_name, exp in expected.items():
        got = outputs.get(out_name)
        if not isinstance(got, torch.Tensor):
            problems.append(f"`{out_name}`: no output was reported")
            continue
        cmp = compare_output(challenge, out_name, got, exp, case)
        report.total += cmp.total
        report.mismatches += cmp.mismatches
        report.max_abs_error = max(report.max_abs_error or 0.0, cmp.max_abs_error)
        report.max_rel_error = max(report.max_rel_error or 0.0, cmp.max_rel_error)
        if not cmp.passed:
            problems.append(cmp.describe(challenge.atol, challenge.rtol))
            if report.worst is None and cmp.worst is not None:
                report.worst = {"output": out_name, **vars(cmp.worst)}
                report.examples = [{"output": out_name, **vars(e)} for e in cmp.examples]
    for input_name in payload.get("modified_inputs", [])[:8]:
        problems.append(f"your solution modified the input `{input_name}`; inputs must be "
                        f"left unchanged (write only to outputs)")
    problems += [f"out-of-bounds write: {msg[:300]}" for msg in payload.get("guard_damage", [])[:8]]
    if problems:
        report.passed = False
        report.message = "\n".join(problems)
    return report


# -- the plan: what the submission will be asked, and what the answers must be ----------------

@dataclass
class Plan:
    cases: List[Tuple[str, Dict[str, Any]]]
    expected: List[Dict[str, torch.Tensor]]
    perf_copies: int = 1
    perf_case: Optional[Dict[str, Any]] = None           # copy 0, as generated (CPU)
    perf_expected: Optional[Dict[str, torch.Tensor]] = None
    fresh_case: Optional[Dict[str, Any]] = None
    fresh_expected: Optional[Dict[str, torch.Tensor]] = None


def rotation_count(nbytes: int, device: torch.device) -> int:
    """Independent input copies so that consecutive timed calls never share cached data."""
    if device.type != "cuda":
        return 2
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20)
    free, _ = torch.cuda.mem_get_info(device)
    wanted = max(2, math.ceil(2 * l2 / max(nbytes, 1)))
    affordable = max(1, int(0.25 * free // max(3 * nbytes, 1)))
    return max(1, min(wanted, affordable, 8))


def _release(case: Dict[str, Any]) -> Dict[str, Any]:
    """Keep only the ints and the CPU copies' shapes: the child regenerates the tensors."""
    return {k: (v if not isinstance(v, torch.Tensor) else v.to("cpu")) for k, v in case.items()}


def gpu_memory_fraction(options: GradeOptions) -> Optional[float]:
    limit = options.limits.gpu_memory_bytes
    if not limit or options.device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(options.device).total_memory
    return max(0.01, min(1.0, limit / total))


def timing_enabled(options: GradeOptions) -> bool:
    return options.action == "submit" and (options.device.type == "cuda" or options.time_on_cpu)


def make_plan(challenge: ChallengeBase, options: GradeOptions) -> Plan:
    directions = directions_of(challenge.get_solve_signature())
    cases = test_cases(challenge, options.action, options.seed)
    plan = Plan(cases=[(n, _release(c)) for n, c in cases],
                expected=[reference_outputs(challenge, c, directions) for _, c in cases])
    del cases
    if options.action == "submit":
        first = performance_case(challenge, options.seed)
        plan.perf_copies = rotation_count(case_bytes(first), options.device)
        plan.perf_expected = reference_outputs(challenge, first, directions)
        plan.perf_case = _release(first)
        del first
        fresh = performance_case(challenge, fresh_seed(options.seed))
        plan.fresh_expected = reference_outputs(challenge, fresh, directions)
        plan.fresh_case = _release(fresh)
    if options.device.type == "cuda":
        torch.cuda.empty_cache()  # leave the GPU's memory to the submission
    return plan


# -- grading ----------------------------------------------------------------------------------

def grade_safely(info: ChallengeInfo, solution: Path, language: str,
                 options: GradeOptions) -> Result:
    """:func:`grade`, with a bug of ours reported as ``internal_error`` and its full traceback."""
    try:
        return grade(info, solution, language, options)
    except SandboxUnavailable as exc:
        return Result(verdict=Verdict.INTERNAL_ERROR.value, challenge=info.display,
                      language=language, action=options.action,
                      device=devices.describe(options.device), seed=options.seed,
                      message=f"grading needs a sandbox and none can be made here: {exc}")
    except Exception:  # noqa: BLE001 - anything not classified above is our bug
        return Result(verdict=Verdict.INTERNAL_ERROR.value, challenge=info.display,
                      language=language, action=options.action,
                      device=devices.describe(options.device),
                      message="the grader failed (a bug in the harness, not in your solution); "
                              "please report it with the details below",
                      details=traceback.format_exc(), seed=options.seed)


def _fail(result: Result, verdict: Verdict, message: str, details: str = "") -> Result:
    result.verdict, result.message, result.details = verdict.value, message, details
    return result


def grade(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions) -> Result:
    device = options.device
    challenge = load_challenge(info, device)
    challenge.seed = options.seed
    result = Result(verdict=Verdict.ACCEPTED.value, challenge=info.display, language=language,
                    action=options.action, device=devices.describe(device), seed=options.seed)
    if device.type == "cpu":
        result.notes.append("no GPU: grading on the CPU"
                            + (" (Triton runs under its interpreter)" if language == "triton" else ""))
    result.notes += languages.binding_notes(Path(solution), language, challenge)
    plan = make_plan(challenge, options)
    solution = Path(solution).resolve()
    job = Job(challenge_path=str(info.path), solution_path=str(solution),
              language=language, device=str(device), action=options.action, seed=options.seed,
              perf_copies=plan.perf_copies, time_budget_s=options.time_budget_s,
              nvcc_flags=list(options.nvcc_flags),
              gpu_memory_fraction=gpu_memory_fraction(options))
    grading = Grading(challenge, plan, options,
                      compile_only=language == "cuda" and device.type != "cuda")
    if options.isolate:
        outcome = run_in_child(job, options.limits, grading, options.progress,
                               read_only=[info.path, solution.parent],
                               gpu_minor=_gpu_minor(device))
    else:
        channel = MemoryChannel(grading, options.progress)
        try:
            channel.send(protocol.SANDBOX, {"notes": []})
            execute(job, channel)
            outcome = ChildOutcome(finished=grading.transcript.done)
        except ProtocolViolation as exc:
            outcome = ChildOutcome(verdict=Verdict.REJECTED.value,
                                   message=f"{protocol.INTERFERENCE}: {exc}")
        outcome.notes.append("not isolated: --no-sandbox (the solution ran in this process)")
    result.logs = outcome.logs
    result.notes += outcome.notes
    return grading.verdict(outcome, result)


def _gpu_minor(device: torch.device) -> Optional[int]:
    if device.type != "cuda":
        return None
    from runner.sandbox.jail import gpu_minor_of
    props = torch.cuda.get_device_properties(device.index or 0)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return gpu_minor_of("")
    domain = getattr(props, "pci_domain_id", 0)
    dev = getattr(props, "pci_device_id", 0)
    return gpu_minor_of(f"{domain:04x}:{bus:02x}:{dev:02x}.0")


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
        self.directions = directions_of(challenge.get_solve_signature())
        self.transcript = protocol.Transcript(len(plan.cases), options.action == "submit")
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
        self.burst_sent_at = 0.0
        self.burst_seconds = 0.0
        self.burst_calls = 0
        self.cover_s = 0.0
        self.timing_sensitive = False
        self.positions: Dict[str, List[int]] = {}
        self.probed: Dict[str, torch.Tensor] = {}
        self._bases: Dict[int, Dict[str, Any]] = {}
        self._rng = secrets.SystemRandom()

    # -- the conversation ----------------------------------------------------------------------
    def on_message(self, message: Message, received_at: float) -> List[Dict[str, Any]]:
        kind, payload, tensors = message.kind, message.payload, message.tensors
        self.transcript.admit(kind, payload)
        if kind == protocol.CASE:
            name, case = self.plan.cases[payload["index"]]
            self.tests.append(check_outputs(self.challenge, name, case, payload, tensors,
                                            self.plan.expected[payload["index"]]))
        elif kind == protocol.PERF_FIRST:
            self.perf_reports.append(check_outputs(self.challenge, "performance",
                                                   self.plan.perf_case, payload, tensors,
                                                   self.plan.perf_expected))
            if timing_enabled(self.options) and self.perf_reports[0].passed:
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
        calls = int(min(1000, max(16, math.ceil(self.options.burst_s / per_call))))
        self.cover_s, cycles = _cover(self.options.device, BURST_COVER_S)
        self.transcript.expect(protocol.BURST_DONE)
        self.timing_sensitive = True
        self.burst_sent_at = time.perf_counter()
        return [{"command": protocol.CMD_BURST, "nonce": self.nonces["burst"], "calls": calls,
                 "cover_cycles": cycles}]

    def _on_burst_done(self, payload: Dict[str, Any], received_at: float):
        calls = payload["calls"]
        if calls > 1000:
            raise ProtocolViolation("a burst that reports more calls than were asked")
        self.burst_calls = calls
        self.child_burst = {k: float(payload[k]) for k in ("enqueue_s", "wall_s")
                            if isinstance(payload.get(k), (int, float))}
        # which bytes of every call's outputs must come back: named only now, after the burst
        self.positions = {}
        for name, expected in (self.plan.perf_expected or {}).items():
            nbytes = expected.numel() * expected.element_size()
            self.positions[name] = sorted(self._rng.sample(range(nbytes), min(nbytes, 64)))
        self.transcript.expect(protocol.BURST_PROBE)
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
        return _release(args), reference_outputs(self.challenge, args, self.directions)

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
                      "child_says": getattr(self, "child_burst", {}),
                      "overhead_per_call_ms": overhead * 1e3, "cover_ms": self.cover_s * 1e3,
                      "per_call_ms": per_call * 1e3}

    def physics_problem(self, median_ms: float) -> str:
        nbytes = self.challenge.bytes_moved(self.plan.perf_case) if self.plan.perf_case else None
        ceiling = devices.ceiling(self.options.device)
        if not nbytes or not ceiling or median_ms <= 0:
            return ""
        gbps = nbytes / (median_ms / 1e3) / 1e9
        if gbps > ceiling.gbps * PHYSICS_MARGIN:
            return (f"a median of {median_ms * 1e3:.1f} us implies {gbps:,.0f} GB/s for the "
                    f"{nbytes:,} bytes the case must move, {100 * gbps / ceiling.gbps:.0f}% of "
                    f"this GPU's measured ceiling ({ceiling.gbps:,.0f} GB/s, {ceiling.source}): "
                    f"faster than the device can move them")
        return ""

    def headline(self, summary: Dict[str, Any]) -> Optional[str]:
        """Settle the solution's time with the parent's clock; a rejection message or None."""
        claim_ms = statistics.median(self.claim["samples_ms"])
        claim_mean_ms = statistics.fmean(self.claim["samples_ms"])
        problem = self.physics_problem(claim_ms)
        if problem:
            return f"{protocol.INTERFERENCE}: the time measured inside the sandbox is impossible: {problem}"
        clock = dict(self.clock or {})
        summary["clock"] = clock
        if not clock:
            return None
        # the burst's clock gives a mean per call: compared with the mean of the timed runs
        parent_ms = clock["per_call_ms"]
        slack_ms = CLOCK_SLACK_S * 1e3 / max(clock["calls"], 1)
        clock["ratio"] = parent_ms / claim_mean_ms if claim_mean_ms > 0 else math.inf
        if parent_ms <= claim_mean_ms * (1 + CLOCK_BAND) + slack_ms:
            clock["agrees"] = True
            return None
        clock["agrees"] = False
        host_ms = float(self.claim.get("host_us", 0.0)) / 1e3
        if host_ms < 0.5 * parent_ms and parent_ms > CLOCK_REJECT * claim_mean_ms + slack_ms:
            return (f"{protocol.INTERFERENCE}: the median measured inside the sandbox "
                    f"({claim_ms * 1e3:.1f} us) is contradicted by the grader's own clock "
                    f"({parent_ms * 1e3:.1f} us per call over {clock['calls']} calls on "
                    f"changed inputs, each checked), and the reported host time "
                    f"({host_ms * 1e3:.1f} us) does not explain the difference")
        summary.setdefault("notes", []).append(
            f"the grader's own clock measured {parent_ms * 1e3:.1f} us per call, more than "
            f"{1 + CLOCK_BAND:g} times the {claim_mean_ms * 1e3:.1f} us mean of the timed runs: "
            f"this time is not corroborated (a leaderboard ranks it only after a verified re-run)")
        return None

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
        if self.options.action == "submit":
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
        return result

    def missing_reports(self) -> str:
        """What the submission side should have reported but did not ('' when complete): a
        forged "done" message cannot stand in for results."""
        if self.transcript.cases != len(self.plan.cases):
            return f"results for {len(self.plan.cases) - self.transcript.cases} test(s)"
        if self.options.action != "submit":
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


def performance_summary(grading: Grading, result: Result):
    """The performance section of the result, or a rejection message."""
    options, plan, challenge = grading.options, grading.plan, grading.challenge
    summary: Dict[str, Any] = {"params": case_params(plan.perf_case), "timed": False}
    if grading.claim is None:
        summary["reason"] = ("no GPU: run once for correctness" if options.device.type != "cuda"
                             else "not timed")
        return summary
    solution = {k: v for k, v in grading.claim.items()
                if k not in ("samples_ms", "run_ids", "digests")}
    solution["median_ms"] = statistics.median(grading.claim["samples_ms"])
    summary.update(timed=True, solution=solution, copies=plan.perf_copies,
                   checked_runs=options.checked_runs, headline="sandbox events")
    problem = grading.headline(summary)
    if problem:
        return problem
    median_ms = summary["solution"]["median_ms"]
    if options.time_reference and options.device.type == "cuda":
        ref = time_reference(challenge, options)
        summary["reference"] = ref
        summary["speedup"] = ref["median_ms"] / median_ms
    summary.update(throughput(challenge, plan.perf_case, median_ms, options.device))
    return summary


def time_reference(challenge: ChallengeBase, options: GradeOptions) -> Dict[str, Any]:
    """The reference timed exactly like the solution (same flush, rotation and statistics)."""
    directions = directions_of(challenge.get_solve_signature())
    first = performance_case(challenge, options.seed)
    copies = [prepare_call(first, directions)]
    for k in range(1, rotation_count(case_bytes(first), options.device)):
        copies.append(prepare_call(performance_case(challenge, copy_seed(options.seed, k)), directions))
    del first
    timing = time_cuda(lambda i: challenge.reference_impl(**copies[i % len(copies)].args),
                       budget_s=options.time_budget_s, flusher=L2Flusher(options.device))
    return {k: v for k, v in timing.to_dict().items() if k not in ("samples_ms", "run_ids")}


def throughput(challenge: ChallengeBase, case: Dict[str, Any], median_ms: float,
               device: torch.device) -> Dict[str, Any]:
    nbytes, nflops = challenge.bytes_moved(case), challenge.flops(case)
    seconds = median_ms / 1e3
    out: Dict[str, Any] = {"bytes": nbytes, "flops": nflops}
    if nbytes:
        out["gbps"] = nbytes / seconds / 1e9
    if nflops:
        out["tflops"] = nflops / seconds / 1e12
    peak = devices.peak_for(devices.describe(device))
    if device.type != "cuda":
        pass
    elif peak is not None:
        out["peak_source"] = f"{peak.name} peak {peak.dram_gbps:.0f} GB/s"
        peak_gbps = peak.dram_gbps
    else:
        peak_gbps = devices.measured_copy_gbps(device)
        out["peak_source"] = f"measured copy bandwidth {peak_gbps:.0f} GB/s"
    if nbytes and device.type == "cuda":
        out["bandwidth_fraction"] = out["gbps"] / peak_gbps
        ceiling = devices.ceiling(device)
        if ceiling:
            out["ceiling_gbps"] = ceiling.gbps
            out["ceiling_source"] = ceiling.source
            out["floor_us"] = nbytes / (ceiling.gbps * 1e9) * 1e6
            out["floor_fraction"] = out["gbps"] / ceiling.gbps
    return out


__all__ = ["GradeOptions", "Grading", "grade", "grade_safely"]
