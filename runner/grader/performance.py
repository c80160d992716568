"""The performance section of a verdict: the solution's time settled against physics and the
grader's own clock, the reference's time, and the throughput.

It reads its evidence as data (:class:`TimingEvidence`, which the conversation gathers) and
returns a :class:`PerformanceOutcome`: the section, or the contradiction that rejects the time
(the verdict itself is :func:`runner.grader.verdict.decide`'s)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from runner import devices, protocol
from runner.buffers import directions_of, prepare_call
from runner.cases import case_bytes, copy_seed, performance_case
from runner.challenge import ChallengeBase
from runner.grader.plan import case_params, rotation_count
from runner.policy import (CLOCK_BAND, CLOCK_REJECT, CLOCK_REJECT_HOST, CLOCK_SLACK_MS,
                           PHYSICS_MARGIN)
from runner.timing import L2Flusher, time_cuda


@dataclass
class TimingEvidence:
    """What the performance section is settled from."""

    challenge: ChallengeBase
    device: torch.device
    claim: Optional[Dict[str, Any]]       # the child's 'timing' message (None: not timed)
    clock: Optional[Dict[str, Any]]       # the grader's own clock over its bursts
    perf_case: Optional[Dict[str, Any]]   # the performance case (copy 0, on the CPU)
    perf_copies: int
    seed: int
    time_budget_s: float                  # for the reference's timing
    time_reference: bool
    checked_runs: int


@dataclass
class PerformanceOutcome:
    section: Dict[str, Any]               # the result's ``performance``
    contradiction: str = ""               # why the time cannot be believed ('' when it can)


def physics_problem(evidence: TimingEvidence, median_ms: float) -> str:
    """Why ``median_ms`` is faster than the device can move the case's bytes ('' if it is not)."""
    case = evidence.perf_case
    nbytes = evidence.challenge.bytes_moved(case) if case else None
    ceiling = devices.ceiling(evidence.device)
    if not nbytes or not ceiling or median_ms <= 0:
        return ""
    gbps = nbytes / (median_ms / 1e3) / 1e9
    if gbps > ceiling.gbps * PHYSICS_MARGIN:
        return (f"a median of {median_ms * 1e3:.1f} us implies {gbps:,.0f} GB/s for the "
                f"{nbytes:,} bytes the case must move, {100 * gbps / ceiling.gbps:.0f}% of "
                f"this GPU's measured ceiling ({ceiling.gbps:,.0f} GB/s, {ceiling.source}): "
                f"faster than the device can move them")
    return ""


def headline(evidence: TimingEvidence, summary: Dict[str, Any]) -> Optional[str]:
    """Settle the solution's time with the parent's clock; a rejection message or None."""
    claim_ms = statistics.median(evidence.claim["samples_ms"])
    claim_mean_ms = statistics.fmean(evidence.claim["samples_ms"])
    problem = physics_problem(evidence, claim_ms)
    if problem:
        return f"{protocol.INTERFERENCE}: the time measured inside the sandbox is impossible: {problem}"
    clock = dict(evidence.clock or {})
    summary["clock"] = clock
    if not clock:
        return None
    # the burst's clock gives a mean per call: compared with the mean of the timed runs
    parent_ms = clock["per_call_ms"]
    slack_ms = CLOCK_SLACK_MS
    clock["ratio"] = parent_ms / claim_mean_ms if claim_mean_ms > 0 else math.inf
    if clock.get("skipped_grader_work"):
        clock["agrees"] = False
        summary.setdefault("notes", []).append(
            "the calls of the grader's timed bursts ran faster than the grader's own per-call "
            "work alone (the input rewrite and the L2 flush each call must do): the grader's "
            "clock cannot corroborate this time (a leaderboard holds it for review)")
        return None
    if parent_ms <= claim_mean_ms * (1 + CLOCK_BAND) + slack_ms:
        clock["agrees"] = True
        return None
    clock["agrees"] = False
    host_ms = float(evidence.claim.get("host_us", 0.0)) / 1e3
    reject = CLOCK_REJECT if evidence.device.type == "cuda" else CLOCK_REJECT_HOST
    if host_ms < 0.5 * parent_ms and parent_ms > reject * claim_mean_ms + slack_ms:
        return (f"{protocol.INTERFERENCE}: the median measured inside the sandbox "
                f"({claim_ms * 1e3:.1f} us) is contradicted by the grader's own clock "
                f"({parent_ms * 1e3:.1f} us per call over {clock['calls']} calls on "
                f"changed inputs, each checked), and the reported host time "
                f"({host_ms * 1e3:.1f} us) does not explain the difference")
    summary.setdefault("notes", []).append(
        f"the grader's own clock measured {parent_ms * 1e3:.1f} us per call, more than "
        f"{1 + CLOCK_BAND:g} times the {claim_mean_ms * 1e3:.1f} us mean of the timed runs: "
        f"this time is not corroborated (a leaderboard holds it for review)")
    return None


STREAM_NOTES = {
    "isolated": ("your solve's GPU work does not wait for the work queued before it on the "
                 "current stream (it runs on a non-blocking stream of its own and does not "
                 "wait): it could read inputs that were still being written, so the grader "
                 "synchronizes the whole device before and after every timed call. Each time "
                 "therefore includes the host time of the call and of a device synchronize; "
                 "make the stream wait for the current one (cudaStreamWaitEvent, "
                 "stream.wait_stream) and join it before returning to be timed on the GPU alone"),
    "device-sync": ("your solve returns while its GPU work is still running on another stream: "
                    "each timed call ends with a device-wide synchronize so that work is billed, "
                    "and the grader's burst drains the device before it rewrites an input copy "
                    "that work may still read"),
}


def stream_note(mode: Any) -> Optional[str]:
    """What the report says of a solve timed in a stream mode of its own (None for "events")."""
    return STREAM_NOTES.get(mode) if isinstance(mode, str) else None


def performance_summary(evidence: TimingEvidence) -> PerformanceOutcome:
    """The performance section of the result, or the contradiction that rejects its time."""
    device = evidence.device
    summary: Dict[str, Any] = {"params": case_params(evidence.perf_case), "timed": False}
    if evidence.claim is None:
        summary["reason"] = ("no GPU: run once for correctness" if device.type != "cuda"
                             else "not timed")
        return PerformanceOutcome(summary)
    solution = {k: v for k, v in evidence.claim.items()
                if k not in ("samples_ms", "run_ids", "digests")}
    solution["median_ms"] = statistics.median(evidence.claim["samples_ms"])
    summary.update(timed=True, solution=solution, copies=evidence.perf_copies,
                   checked_runs=evidence.checked_runs, headline="sandbox events")
    note = stream_note(solution.get("mode"))
    if note:
        summary.setdefault("notes", []).append(note)
    problem = headline(evidence, summary)
    if problem:
        return PerformanceOutcome(summary, contradiction=problem)
    median_ms = summary["solution"]["median_ms"]
    if evidence.time_reference and device.type == "cuda":
        ref = time_reference(evidence.challenge, device, evidence.seed, evidence.time_budget_s)
        summary["reference"] = ref
        summary["speedup"] = ref["median_ms"] / median_ms
    summary.update(throughput(evidence.challenge, evidence.perf_case, median_ms, device))
    return PerformanceOutcome(summary)


def time_reference(challenge: ChallengeBase, device: torch.device, seed: int,
                   budget_s: float) -> Dict[str, Any]:
    """The reference timed exactly like the solution (same flush, rotation and statistics)."""
    directions = directions_of(challenge.get_solve_signature())
    first = performance_case(challenge, seed)
    copies = [prepare_call(first, directions)]
    for k in range(1, rotation_count(case_bytes(first), device)):
        copies.append(prepare_call(performance_case(challenge, copy_seed(seed, k)), directions))
    del first
    timing = time_cuda(lambda i: challenge.reference_impl(**copies[i % len(copies)].args),
                       budget_s=budget_s, flusher=L2Flusher(device))
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
            out["ceiling_fraction"] = out["gbps"] / ceiling.gbps
        floor = devices.case_floor(device, nbytes, challenge.bytes_written(case))
        if floor:
            out["floor_us"], out["floor_source"] = floor.ms * 1e3, floor.source
        elif ceiling:
            out["floor_us"] = nbytes / (ceiling.gbps * 1e9) * 1e6
            out["floor_source"] = "these bytes at the measured ceiling's rate"
        if "floor_us" in out:
            out["floor_fraction"] = out["floor_us"] / 1e3 / median_ms
    return out

