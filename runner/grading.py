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
from runner.sandbox.watch import ChildOutcome
from runner.timing import L2Flusher, LaunchCover, burst_loop, flush_bytes

if TYPE_CHECKING:
    from runner.grade import GradeOptions

BURST_COVER_S = 1e-3         # the spin the burst starts behind
PROBE_BYTES = 384 * 1024     # the burst probe's bytes at most (512 KiB as base64, one line)
BURST_ROUNDS = 3             # rounds of four bursts: real and null, short and long, in random order
MAX_BURST_ROUNDS = 7         # ...more where the output sets cap the bursts' length (97)
SHORT_PART = 4               # the short bursts are a quarter of the long ones
NULL_SLACK = 0.03            # the child's null burst is believed up to 3% above the grader's own
BURST_CHECKED = 2            # calls checked in full per real burst (the last and one at random)
HOST_COVER = 1.5             # each burst call's GPU work is made this many times its host time


def clock_per_call(rounds: List[Dict[str, Any]], parent_null_s: float,
                   slack: float = NULL_SLACK) -> Dict[str, Any]:
    """The solve's time per call from bursts timed on the grader's clock.

    Each round has four bursts, ``{"real": {calls: seconds}, "null": {calls: seconds}}`` at two
    lengths. A burst of n calls takes F + n (o + s) (real) or F' + n o (null): the slope over the
    two lengths drops the fixed costs F, F' (the command, the cover, the probe's round trip),
    and the difference of the slopes is s, the solve's share, on the same clock. The null's
    slope comes from the untrusted side, so it is believed only up to ``slack`` above
    ``parent_null_s``, the same loop measured by the grader in its own process (a null made
    slower would make the solve look faster). The median over the rounds is the figure."""
    per_round = []
    for r in rounds:
        (n1, r1), (n2, r2) = sorted(r["real"].items())
        (m1, z1), (m2, z2) = sorted(r["null"].items())
        if n2 <= n1 or m2 <= m1:
            raise ValueError("a round of the burst needs two different lengths")
        real, null = (r2 - r1) / (n2 - n1), (z2 - z1) / (m2 - m1)
        believed = min(null, parent_null_s * (1 + slack)) if parent_null_s > 0 else null
        per_round.append({"real_slope_s": real, "null_slope_s": null, "null_believed_s": believed,
                          "per_call_s": max(0.0, real - believed)})
    return {"per_call_s": statistics.median(p["per_call_s"] for p in per_round),
            "real_slope_s": statistics.median(p["real_slope_s"] for p in per_round),
            "null_slope_s": statistics.median(p["null_slope_s"] for p in per_round),
            "null_clipped": any(p["null_believed_s"] < p["null_slope_s"] for p in per_round),
            "rounds": per_round}


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
            what = "timed run" if phase == "timed" else "call of the grader's timed burst"
            check.message = (f"the output of {what} {index}, on inputs changed before that run, "
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

    def _burst(self) -> List[Dict[str, Any]]:
        """Plan the bursts of the grader's clock and send the first. Rounds of four bursts in
        random order: the real one (each call on changed inputs, then checked) and the null one
        (the same flushes and input rewrites without the solve), each at a short and a long
        length; :func:`clock_per_call` turns their times into the solve's time per call."""
        median_s = statistics.median(self.claim["samples_ms"]) / 1e3
        mode = self.claim.get("mode")
        isolate = mode == "isolated"
        # a solve whose work outlived the current stream in the timed runs (the timer's
        # "device-sync" mode) gets the device drained before each input copy is reused; one
        # whose work does not wait for the current stream ("isolated") before every call
        sync_every = self.plan.perf_copies if mode == "device-sync" else 0
        flush_bytes = self._burst_flush_bytes(median_s, isolate, sync_every)
        null_s, _ = self._parent_null(flush_bytes, isolate, sync_every)
        # a round takes about (short + long) calls of a real and a null burst each
        per_long_call = (1 + 1 / SHORT_PART) * (2 * null_s + max(median_s, self._floor_s(), 1e-6))
        sets = self.claim.get("burst_sets", protocol.MAX_BURST_CALLS)
        longest = min(protocol.MAX_BURST_CALLS, max(1, int(sets)))
        wanted = max(16, math.ceil(self.options.burst_s / BURST_ROUNDS / per_long_call))
        long_calls = int(min(longest, wanted))
        # bursts cut short by the output sets: more rounds, so the median has as many calls
        rounds = max(BURST_ROUNDS, min(MAX_BURST_ROUNDS, math.ceil(BURST_ROUNDS * wanted
                                                                   / max(long_calls, 1))))
        short_calls = max(1, long_calls // SHORT_PART)
        if short_calls >= long_calls:     # a burst of one call: nothing to take a slope over
            long_calls, short_calls = max(long_calls, 2), 1
        self.cover_s, cycles = _cover(self.options.device, BURST_COVER_S)
        self.burst_setup = {"lengths": [short_calls, long_calls], "flush_bytes": flush_bytes,
                            "sync_every": sync_every, "isolate": isolate,
                            "parent_null_s": null_s, "cover_cycles": cycles}
        for _ in range(rounds):
            steps = [(kind, n) for kind in ("real", "null") for n in (short_calls, long_calls)]
            self._rng.shuffle(steps)
            self.schedule += [{"kind": kind, "calls": n} for kind, n in steps]
        return self._next_burst()

    def _next_burst(self) -> List[Dict[str, Any]]:
        if not self.schedule:
            self._finish_clock()
            return self._fresh()
        burst = self.schedule.pop(0)
        burst["nonce"] = secrets.randbits(62)
        burst["round"] = len(self.bursts) // 4
        self.bursts.append(burst)
        self.nonces["burst"] = burst["nonce"]
        setup = self.burst_setup
        self.transcript.expect(protocol.BURST_DONE)
        self.timing_sensitive = True
        self.burst_sent_at = time.perf_counter()
        burst["sent_at"] = self.burst_sent_at
        return [{"command": protocol.CMD_BURST, "nonce": burst["nonce"], "calls": burst["calls"],
                 "cover_cycles": setup["cover_cycles"], "sync_every": setup["sync_every"],
                 "null": burst["kind"] == "null", "isolate": setup["isolate"],
                 "flush_bytes": setup["flush_bytes"]}]

    def _on_burst_done(self, payload: Dict[str, Any], received_at: float):
        calls = payload["calls"]
        burst = self.bursts[-1] if self.bursts else {"calls": protocol.MAX_BURST_CALLS}
        if calls != burst["calls"]:
            raise ProtocolViolation(f"a burst that reports {calls} calls where "
                                    f"{burst['calls']} were asked")
        self.burst_calls = calls
        self.burst_done_at = received_at
        burst["done_at"] = received_at
        self.child_burst = {k: float(payload[k]) for k in ("enqueue_s", "wall_s")
                            if isinstance(payload.get(k), (int, float))}
        burst["child_says"] = self.child_burst
        # which bytes of every call's outputs must come back: named only now, after the burst;
        # as many as keep the probe's line well under the report channel's limit for the
        # longest burst, and as many for every burst, real or null (its cost then drops out)
        outputs = self.plan.perf_expected or {}
        longest = max(self.burst_setup.get("lengths", [calls]))
        per_output = max(4, min(64, PROBE_BYTES // max(1, max(calls, longest) * len(outputs))))
        self.positions = {}
        for name, expected in outputs.items():
            nbytes = expected.numel() * expected.element_size()
            self.positions[name] = sorted(self._rng.sample(range(nbytes), min(nbytes, per_output)))
        self.transcript.expect(protocol.BURST_PROBE)
        self.probe_sent_at = time.perf_counter()
        burst["probe_sent_at"] = self.probe_sent_at
        return [{"command": protocol.CMD_PROBE, "calls": calls, "positions": self.positions}]

    def _on_burst_probe(self, payload: Dict[str, Any], received_at: float):
        self.burst_seconds = received_at - self.burst_sent_at
        self.timing_sensitive = False
        burst = self.bursts[-1] if self.bursts else {"kind": "real"}
        burst["seconds"] = self.burst_seconds
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
        if burst["kind"] == "null":      # nothing was computed: nothing to check
            return self._next_burst()
        calls = list(range(self.burst_calls))
        return self._reveal("burst", self._pick(calls, [calls[-1]], BURST_CHECKED))

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
    def _floor_s(self) -> float:
        nbytes = self.challenge.bytes_moved(self.plan.perf_case) if self.plan.perf_case else None
        ceiling = devices.ceiling(self.options.device)
        if not nbytes or not ceiling:
            return 0.0
        return nbytes / (ceiling.gbps * 1e9)

    def _burst_flush_bytes(self, median_s: float, isolate: bool, sync_every: int) -> int:
        """How much each burst call reads to flush L2: what the timed runs read, more where a
        call's host time (the solve's, as the timed runs saw it, and the rewrite's, measured
        here) would outrun its GPU work and leave the GPU idle; never more than
        BURST_FLUSH_BYTES. 0 on the CPU."""
        device = self.options.device
        if device.type != "cuda":
            return 0
        base = flush_bytes(device)
        ceiling = devices.ceiling(device)
        if isolate or not ceiling:     # an isolated call waits for the device anyway
            return base
        null_s, host_s = self._parent_null(base, isolate, sync_every)
        host_s += float(self.claim.get("host_us", 0.0)) / 1e6
        missing = HOST_COVER * host_s - (null_s + median_s)
        extra = int(max(0.0, missing) * ceiling.gbps * 1e9)
        return int(min(BURST_FLUSH_BYTES, base + -(-extra // 2**20) * 2**20))

    def _parent_null(self, flush_bytes_: int, isolate: bool, sync_every: int) -> Tuple[float, float]:
        """(seconds per call, host seconds per call) of a null burst measured here, on this
        device, with the child's own loop (:func:`runner.timing.burst_loop`): the input rewrite
        and the flush, no solve, the slope over two lengths (median of three)."""
        device = self.options.device
        base = self._bases.get(0) or performance_case(self.challenge, copy_seed(self.options.seed, 0))
        self._bases[0] = base
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in base.items()}
        cuda = device.type == "cuda"
        if cuda:
            flusher = self._flusher.sized(flush_bytes_)
            sync = lambda: torch.cuda.synchronize(device)   # noqa: E731
        else:
            flusher = sync = (lambda: None)
        generator = torch.Generator(device=device)

        def prepare(i: int) -> None:
            perturb(self.challenge, args, base, self.directions, run_generator(device, 1, i, generator))

        def run(n: int) -> Tuple[float, float]:
            sync()
            t0 = time.perf_counter()
            burst_loop(n, prepare, None, flusher, isolate=isolate, sync_every=sync_every, sync=sync)
            t1 = time.perf_counter()
            sync()
            return time.perf_counter() - t0, t1 - t0

        run(4)    # warm-up
        short, long_ = 8, 40
        slopes, hosts = [], []
        for _ in range(3):
            a, _ = run(short)
            b, host = run(long_)
            slopes.append(max(0.0, (b - a) / (long_ - short)))
            hosts.append(host / long_)
        return statistics.median(slopes), statistics.median(hosts)

    @property
    def _flusher(self) -> L2Flusher:
        if not hasattr(self, "_flusher_obj"):
            self._flusher_obj = L2Flusher(self.options.device, BURST_FLUSH_BYTES)
        return self._flusher_obj

    def _finish_clock(self) -> None:
        rounds: Dict[int, Dict[str, Dict[int, float]]] = {}
        for b in self.bursts:
            r = rounds.setdefault(b["round"], {"real": {}, "null": {}})
            r[b["kind"]][b["calls"]] = b["seconds"]
        setup = self.burst_setup
        found = clock_per_call([rounds[k] for k in sorted(rounds)], setup["parent_null_s"])
        real = [b for b in self.bursts if b["kind"] == "real"]
        last = real[-1]
        self.clock = {"method": "slope of real minus null bursts",
                      "calls": sum(b["calls"] for b in real), "lengths": setup["lengths"],
                      "rounds": len(rounds), "seconds": sum(b["seconds"] for b in self.bursts),
                      "per_call_ms": found["per_call_s"] * 1e3,
                      "real_slope_ms": found["real_slope_s"] * 1e3,
                      "null_slope_ms": found["null_slope_s"] * 1e3,
                      "grader_null_ms": setup["parent_null_s"] * 1e3,
                      "null_clipped": found["null_clipped"],
                      "flush_bytes": setup["flush_bytes"], "sync_every": setup["sync_every"],
                      "isolated": setup["isolate"], "cover_ms": self.cover_s * 1e3,
                      "child_says": last.get("child_says", {}),
                      # where the fixed cost of the last real burst goes, for people reading the
                      # result: the command to the burst's report, and the probe's round trip
                      "to_done_ms": (last["done_at"] - last["sent_at"]) * 1e3,
                      "probe_ms": (last["sent_at"] + last["seconds"] - last["probe_sent_at"]) * 1e3,
                      "per_round_ms": [{k: v * 1e3 for k, v in r.items()} for r in found["rounds"]]}

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

