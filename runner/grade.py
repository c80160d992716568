"""Grading one submission: the example (run) or every functional test plus the timed
performance test (submit), each compared with the challenge's reference."""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from runner import devices, languages
from runner.buffers import PreparedCall, directions_of, prepare_call
from runner.challenge import ChallengeBase, ChallengeInfo, load_challenge
from runner.check import Comparison, compare, compare_exact
from runner.errors import SubmissionError, UserRuntimeError
from runner.report import Result, TestReport
from runner.timing import L2Flusher, time_cuda

FRESH_SEED_OFFSET = 7919      # the seed of the post-timing "fresh inputs" check
COPY_SEED_OFFSET = 104_729    # seeds of the rotated performance copies


@dataclass
class GradeOptions:
    action: str = "run"                   # "run": the example test; "submit": all + timing
    device: torch.device = torch.device("cpu")
    seed: int = 0                         # grading seed; the example test ignores it
    time_budget_s: float = 3.0            # per timed implementation
    time_reference: bool = True
    nvcc_flags: List[str] = field(default_factory=list)   # extra flags for CUDA solutions
    progress: Callable[[str], None] = field(default=lambda message: None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def case_params(case: Dict[str, Any]) -> Dict[str, Any]:
    params = {k: v for k, v in case.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not params:
        params = {k: list(v.shape) for k, v in case.items() if isinstance(v, torch.Tensor)}
    return params


def reference_outputs(challenge: ChallengeBase, case: Dict[str, Any],
                      directions: Dict[str, str]) -> Dict[str, torch.Tensor]:
    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    challenge.reference_impl(**args)
    return {name: args[name] for name, d in directions.items() if d != "in"}


def compare_output(challenge: ChallengeBase, name: str, got: torch.Tensor,
                   expected: torch.Tensor, case: Dict[str, Any]) -> Comparison:
    custom = getattr(challenge, "compare_output", None)
    if custom is not None:
        return custom(name, got, expected, case)
    if expected.is_floating_point():
        return compare(name, got, expected, challenge.atol, challenge.rtol)
    return compare_exact(name, got, expected)


def call_and_sync(solve_call, prepared: PreparedCall, device: torch.device) -> None:
    solve_call(prepared.args)
    try:
        synchronize(device)
    except RuntimeError as exc:  # a CUDA error raised by the solution's kernels
        raise UserRuntimeError(f"a CUDA error occurred in your kernels: {exc}".strip())


def check_call(challenge: ChallengeBase, name: str, case: Dict[str, Any],
               prepared: PreparedCall, expected: Dict[str, torch.Tensor]) -> TestReport:
    """Compare one call's outputs with ``expected`` and check its inputs and guards."""
    report = TestReport(name=name, passed=True, params=case_params(case))
    problems: List[str] = []
    for out_name, exp in expected.items():
        cmp = compare_output(challenge, out_name, prepared.args[out_name], exp, case)
        report.total += cmp.total
        report.mismatches += cmp.mismatches
        report.max_abs_error = max(report.max_abs_error or 0.0, cmp.max_abs_error)
        report.max_rel_error = max(report.max_rel_error or 0.0, cmp.max_rel_error)
        if not cmp.passed:
            problems.append(cmp.describe(challenge.atol, challenge.rtol))
            if report.worst is None and cmp.worst is not None:
                report.worst = {"output": out_name, **vars(cmp.worst)}
                report.examples = [{"output": out_name, **vars(e)} for e in cmp.examples]
    for input_name in prepared.modified_inputs():
        problems.append(f"your solution modified the input `{input_name}`; inputs must be "
                        f"left unchanged (write only to outputs)")
    problems += [f"out-of-bounds write: {msg}" for msg in prepared.guard_damage()]
    if problems:
        report.passed = False
        report.message = "\n".join(problems)
    return report


def run_case(challenge, solve_call, name, case, options: GradeOptions) -> TestReport:
    directions = directions_of(challenge.get_solve_signature())
    expected = reference_outputs(challenge, case, directions)
    prepared = prepare_call(case, directions)
    call_and_sync(solve_call, prepared, options.device)
    return check_call(challenge, name, case, prepared, expected)


def _fail(result: Result, verdict: str, message: str, details: str = "") -> Result:
    result.verdict, result.message, result.details = verdict, message, details
    return result


def grade_safely(info: ChallengeInfo, solution: Path, language: str,
                 options: GradeOptions) -> Result:
    """:func:`grade`, with a bug of ours reported as ``internal_error`` and its full traceback."""
    try:
        return grade(info, solution, language, options)
    except Exception:  # noqa: BLE001 - anything not classified above is our bug
        return Result(verdict="internal_error", challenge=info.display, language=language,
                      action=options.action, device=devices.describe(options.device),
                      message="the grader failed (a bug in the harness, not in your solution); "
                              "please report it with the details below",
                      details=traceback.format_exc(), seed=options.seed)


def grade(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions) -> Result:
    device = options.device
    challenge = load_challenge(info, device)
    challenge.seed = options.seed
    result = Result(verdict="accepted", challenge=info.display, language=language,
                    action=options.action, device=devices.describe(device), seed=options.seed)
    if device.type == "cpu":
        result.notes.append("no GPU: grading on the CPU"
                            + (" (Triton runs under its interpreter)" if language == "triton" else ""))
    options.progress("compiling" if language == "cuda" else "loading")
    try:
        solve_call = languages.backend(language).load(solution, challenge, device,
                                                      extra_flags=options.nvcc_flags)
    except SubmissionError as exc:
        return _fail(result, exc.verdict, exc.message, exc.details)

    try:
        if options.action == "run":
            cases = [("example", challenge.generate_example_test())]
        else:
            cases = [(f"test {k + 1}", c) for k, c in enumerate(challenge.generate_functional_test())]
        for k, (name, case) in enumerate(cases):
            options.progress(f"running {name} ({k + 1} of {len(cases)})")
            report = run_case(challenge, solve_call, name, case, options)
            result.tests.append(report)
        failed = [t for t in result.tests if not t.passed]
        if failed:
            first = failed[0]
            return _fail(result, "wrong_answer",
                         f"{len(failed)} of {len(result.tests)} tests failed; first: {first.name} "
                         f"({', '.join(f'{k}={v}' for k, v in first.params.items())}): "
                         f"{first.message.splitlines()[0]}")
        if options.action == "submit":
            options.progress("timing")
            perf_report, perf = run_performance(challenge, solve_call, options)
            result.tests.append(perf_report)
            result.performance = perf
            if not perf_report.passed:
                return _fail(result, "wrong_answer",
                             f"performance test: {perf_report.message.splitlines()[0]}")
    except SubmissionError as exc:
        return _fail(result, exc.verdict, exc.message, exc.details)
    result.message = ("example test passed" if options.action == "run"
                      else f"all {len(result.tests)} tests passed")
    return result


# -- performance --------------------------------------------------------------------------------

def _case_bytes(case: Dict[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in case.values() if isinstance(v, torch.Tensor))


def _generate_with_seed(challenge: ChallengeBase, seed: int) -> Dict[str, Any]:
    saved = challenge.seed
    challenge.seed = seed
    try:
        torch.manual_seed(seed)
        return challenge.generate_performance_test()
    finally:
        challenge.seed = saved


def rotation_count(case_bytes: int, device: torch.device) -> int:
    """Independent input copies so that consecutive timed calls never share cached data."""
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20)
    free, _ = torch.cuda.mem_get_info(device)
    wanted = max(2, math.ceil(2 * l2 / max(case_bytes, 1)))
    affordable = max(1, int(0.3 * free // max(2 * case_bytes, 1)))
    return max(1, min(wanted, affordable, 8))


def run_performance(challenge: ChallengeBase, solve_call,
                    options: GradeOptions) -> Tuple[TestReport, Dict[str, Any]]:
    device = options.device
    directions = directions_of(challenge.get_solve_signature())
    case = _generate_with_seed(challenge, options.seed)
    params = case_params(case)
    perf: Dict[str, Any] = {"params": params, "timed": False}
    expected = reference_outputs(challenge, case, directions)
    first = prepare_call(case, directions)
    call_and_sync(solve_call, first, device)
    report = check_call(challenge, "performance", case, first, expected)
    if not report.passed:
        return report, perf
    if device.type != "cuda":
        perf["reason"] = "no GPU: run once for correctness"
        fresh_check = check_fresh_inputs(challenge, solve_call, first, options)
        return (fresh_check or report), perf

    copies = [(first, case, expected)]
    for k in range(1, rotation_count(_case_bytes(case), device)):
        other = _generate_with_seed(challenge, options.seed + COPY_SEED_OFFSET + k)
        copies.append((prepare_call(other, directions), other,
                       reference_outputs(challenge, other, directions)))
    flusher = L2Flusher(device)

    def before(i: int) -> None:
        copies[i % len(copies)][0].poison(directions)

    timing = time_cuda(lambda i: solve_call(copies[i % len(copies)][0].args), before=before,
                       budget_s=options.time_budget_s, flusher=flusher)
    synchronize(device)
    # the last timed call on each copy must still be right (no batching across calls)
    for k, (prepared, copy_case, copy_expected) in enumerate(copies):
        check = check_call(challenge, "performance", copy_case, prepared, copy_expected)
        if not check.passed:
            check.message = (f"after timing, the output of the last timed call on input copy {k} "
                             f"was wrong (does the result depend on an earlier call, or is it "
                             f"cached by shape or pointer?): {check.message}")
            return check, perf
    fresh_check = check_fresh_inputs(challenge, solve_call, first, options)
    if fresh_check is not None:
        return fresh_check, perf

    perf.update(timed=True, solution=timing.to_dict(), copies=len(copies))
    if options.time_reference:
        ref_copies = [prepare_call(c, directions) for _, c, _ in copies]
        ref_timing = time_cuda(lambda i: challenge.reference_impl(**ref_copies[i % len(ref_copies)].args),
                               budget_s=options.time_budget_s, flusher=flusher)
        perf["reference"] = ref_timing.to_dict()
        perf["speedup"] = ref_timing.median_ms / timing.median_ms
    perf.update(throughput(challenge, case, timing.median_ms, device))
    return report, perf


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
    if peak is not None:
        out["peak_source"] = f"{peak.name} peak {peak.dram_gbps:.0f} GB/s"
        peak_gbps = peak.dram_gbps
    else:
        peak_gbps = devices.measured_copy_gbps(device)
        out["peak_source"] = f"measured copy bandwidth {peak_gbps:.0f} GB/s"
    if nbytes:
        out["bandwidth_fraction"] = out["gbps"] / peak_gbps
    return out


def check_fresh_inputs(challenge: ChallengeBase, solve_call, prepared: PreparedCall,
                       options: GradeOptions) -> Optional[TestReport]:
    """Write fresh random inputs of the same shape into the same buffers and grade again, so an
    answer cached by shape, by pointer or from an earlier call fails. None when it passes."""
    directions = directions_of(challenge.get_solve_signature())
    fresh = _generate_with_seed(challenge, options.seed + FRESH_SEED_OFFSET)
    for name, value in fresh.items():
        if not isinstance(value, torch.Tensor):
            continue
        if directions.get(name, "in") == "in":
            prepared.args[name].copy_(value)
            prepared.input_snapshots[name].copy_(value)
        else:
            prepared.outputs[name].view.copy_(value)
    prepared.poison(directions)
    call_and_sync(solve_call, prepared, options.device)
    check = check_call(challenge, "performance (fresh inputs)", fresh, prepared,
                       reference_outputs(challenge, fresh, directions))
    if check.passed:
        return None
    check.message = ("the result did not follow new inputs written into the same buffers "
                     "(is an answer cached by shape, by pointer or from an earlier call?): "
                     + check.message)
    return check
