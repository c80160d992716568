"""The trusted side of a grading: expected outputs, comparison, verdicts, reference timing.

The submission side (:mod:`runner.execute`) runs in a sandboxed child process by default
(:mod:`runner.isolation`), or in this process with ``isolate=False``. It reports outputs;
this module alone holds the expected outputs and decides the verdict.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from runner import devices, languages
from runner.buffers import directions_of, prepare_call
from runner.challenge import ChallengeBase, ChallengeInfo, load_challenge
from runner.check import Comparison, default_comparison
from runner.execute import (FRESH_SEED_OFFSET, Job, MemoryChannel, copy_seed, execute,
                            performance_case, test_cases, with_seed)
from runner.isolation import ChildOutcome, Limits, run_in_child
from runner.report import Result, TestReport
from runner.timing import L2Flusher, time_cuda

Messages = List[Tuple[str, Dict[str, Any], Dict[str, torch.Tensor]]]


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
    for input_name in payload.get("modified_inputs", []):
        problems.append(f"your solution modified the input `{input_name}`; inputs must be "
                        f"left unchanged (write only to outputs)")
    problems += [f"out-of-bounds write: {msg}" for msg in payload.get("guard_damage", [])]
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
    perf_cases: List[Dict[str, Any]] = field(default_factory=list)    # one per copy
    perf_expected: List[Dict[str, torch.Tensor]] = field(default_factory=list)
    fresh_case: Optional[Dict[str, Any]] = None
    fresh_expected: Optional[Dict[str, torch.Tensor]] = None


def case_bytes(case: Dict[str, Any]) -> int:
    """Bytes of all tensors in a test case."""
    return sum(v.numel() * v.element_size() for v in case.values() if isinstance(v, torch.Tensor))


def rotation_count(nbytes: int, device: torch.device) -> int:
    """Independent input copies so that consecutive timed calls never share cached data."""
    if device.type != "cuda":
        return 1
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


def make_plan(challenge: ChallengeBase, options: GradeOptions) -> Plan:
    directions = directions_of(challenge.get_solve_signature())
    cases = test_cases(challenge, options.action, options.seed)
    plan = Plan(cases=[(n, _release(c)) for n, c in cases],
                expected=[reference_outputs(challenge, c, directions) for _, c in cases])
    del cases
    if options.action == "submit":
        first = performance_case(challenge, options.seed)
        plan.perf_copies = rotation_count(case_bytes(first), options.device)
        for k in range(plan.perf_copies):
            case = first if k == 0 else performance_case(challenge, copy_seed(options.seed, k))
            plan.perf_expected.append(reference_outputs(challenge, case, directions))
            plan.perf_cases.append(_release(case))
            del case
        del first
        fresh = performance_case(challenge, options.seed + FRESH_SEED_OFFSET)
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
    except Exception:  # noqa: BLE001 - anything not classified above is our bug
        return Result(verdict="internal_error", challenge=info.display, language=language,
                      action=options.action, device=devices.describe(options.device),
                      message="the grader failed (a bug in the harness, not in your solution); "
                              "please report it with the details below",
                      details=traceback.format_exc(), seed=options.seed)


def _fail(result: Result, verdict: str, message: str, details: str = "") -> Result:
    result.verdict, result.message, result.details = verdict, message, details
    return result


def grade(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions) -> Result:
    device = options.device
    challenge = load_challenge(info, device)
    challenge.seed = options.seed
    result = Result(verdict="accepted", challenge=info.display, language=language,
                    action=options.action, device=devices.describe(device), seed=options.seed)
    if device.type == "cpu":
        result.notes.append("no GPU: grading on the CPU"
                            + (" (Triton runs under its interpreter)" if language == "triton" else ""))
    result.notes += languages.binding_notes(Path(solution), language, challenge)
    plan = make_plan(challenge, options)
    job = Job(challenge_path=str(info.path), solution_path=str(Path(solution).resolve()),
              language=language, device=str(device), action=options.action, seed=options.seed,
              perf_copies=plan.perf_copies, time_budget_s=options.time_budget_s,
              nvcc_flags=list(options.nvcc_flags),
              gpu_memory_fraction=gpu_memory_fraction(options))
    if options.isolate:
        outcome = run_in_child(job, options.limits, options.progress)
    else:
        channel = MemoryChannel(options.progress)
        execute(job, channel)
        outcome = ChildOutcome(messages=channel.messages, finished=True)
    result.logs = outcome.logs
    result.notes += outcome.notes
    return judge_messages(challenge, plan, outcome, result, options)


def judge_messages(challenge: ChallengeBase, plan: Plan, outcome: ChildOutcome, result: Result,
                   options: GradeOptions) -> Result:
    """Turn the submission's messages (and how its process ended) into the verdict."""
    perf: Dict[str, Any] = {}
    perf_reports: List[TestReport] = []
    for kind, payload, tensors in outcome.messages:
        if kind == "case":
            k = int(payload["index"])
            name, case = plan.cases[k]
            result.tests.append(check_outputs(challenge, name, case, payload, tensors, plan.expected[k]))
        elif kind == "perf_first":
            perf_reports.append(check_outputs(challenge, "performance", plan.perf_cases[0], payload,
                                              tensors, plan.perf_expected[0]))
        elif kind == "timing":
            perf["solution"] = payload
        elif kind == "perf_copy":
            k = int(payload["index"])
            check = check_outputs(challenge, "performance", plan.perf_cases[k], payload, tensors,
                                  plan.perf_expected[k])
            if not check.passed:
                check.message = (f"after timing, the output of the last timed call on input copy "
                                 f"{k} was wrong (does the result depend on an earlier call, or is "
                                 f"it cached by shape or pointer?): {check.message}")
                perf_reports.append(check)
        elif kind == "perf_fresh":
            check = check_outputs(challenge, "performance (fresh inputs)", plan.fresh_case, payload,
                                  tensors, plan.fresh_expected)
            if not check.passed:
                check.message = ("the result did not follow new inputs written into the same "
                                 "buffers (is an answer cached by shape, by pointer or from an "
                                 "earlier call?): " + check.message)
                perf_reports.append(check)
        elif kind == "error":
            return _fail(result, payload["verdict"], payload["message"], payload.get("details", ""))

    failed = [t for t in result.tests if not t.passed]
    if failed:
        first = failed[0]
        return _fail(result, "wrong_answer",
                     f"{len(failed)} of {len(result.tests)} tests failed; first: {first.name} "
                     f"({', '.join(f'{k}={v}' for k, v in first.params.items())}): "
                     f"{first.message.splitlines()[0]}")
    if not outcome.finished:
        return _fail(result, outcome.verdict, outcome.message, outcome.details)
    missing = missing_reports(plan, outcome, options)
    if missing:
        return _fail(result, "runtime_error",
                     f"the submission's process ended without reporting {missing}; was the "
                     f"harness's report channel written to or closed by your code?")
    if options.action == "submit":
        if perf_reports:
            result.tests.append(perf_reports[-1] if not perf_reports[-1].passed else perf_reports[0])
        bad = [r for r in perf_reports if not r.passed]
        if bad:
            return _fail(result, "wrong_answer", f"performance test: {bad[0].message.splitlines()[0]}")
        result.performance = performance_summary(challenge, plan, perf, options)
    result.message = ("example test passed" if options.action == "run"
                      else f"all {len(result.tests)} tests passed")
    return result


def missing_reports(plan: Plan, outcome: ChildOutcome, options: GradeOptions) -> str:
    """What the submission side should have reported but did not ('' when complete): a forged
    "done" message cannot stand in for results."""
    kinds = [kind for kind, _, _ in outcome.messages]
    cases = {int(p.get("index", -1)) for k, p, _ in outcome.messages if k == "case"}
    if cases != set(range(len(plan.cases))):
        return f"results for {len(plan.cases) - len(cases & set(range(len(plan.cases))))} test(s)"
    if options.action != "submit":
        return ""
    needed = ["perf_first", "perf_fresh"]
    if options.device.type == "cuda":
        needed.append("timing")
        copies = {int(p.get("index", -1)) for k, p, _ in outcome.messages if k == "perf_copy"}
        if copies != set(range(plan.perf_copies)):
            return "the outputs of the timed runs"
    absent = [n for n in needed if n not in kinds]
    return f"the performance results ({', '.join(absent)})" if absent else ""


def performance_summary(challenge: ChallengeBase, plan: Plan, perf: Dict[str, Any],
                        options: GradeOptions) -> Dict[str, Any]:
    device = options.device
    summary: Dict[str, Any] = {"params": case_params(plan.perf_cases[0]), "timed": False}
    if "solution" not in perf:
        summary["reason"] = ("no GPU: run once for correctness" if device.type != "cuda"
                             else "not timed")
        return summary
    timing = perf["solution"]
    summary.update(timed=True, solution=timing, copies=plan.perf_copies)
    if options.time_reference:
        ref = time_reference(challenge, options)
        summary["reference"] = ref
        summary["speedup"] = ref["median_ms"] / timing["median_ms"]
    summary.update(throughput(challenge, plan.perf_cases[0], timing["median_ms"], device))
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
    return timing.to_dict()


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


__all__ = ["GradeOptions", "grade", "grade_safely", "with_seed"]
