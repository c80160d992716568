"""Checks of the numbers: the reference against itself in float64 (is the tolerance
achievable? any NaN or Inf?), and the performance case's memory budget and cost model."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.authoring.context import Context, fmt_bytes
from runner.authoring.float64 import LOW_PRECISION, ComputeInFloat64
from runner.authoring.results import CheckResult, failed, passed, skipped, stricter
from runner.buffers import fill_initial_, promised_initial
from runner.cases import case_bytes
from runner.challenge import ChallengeBase
from runner.grader.plan import compare_output
from runner.policy import FLOAT64_PERF_BYTES, MEMORY_BUDGET_BYTES, MEMORY_FACTOR


def _float64_outputs(ctx: Context, case: Dict[str, Any],
                     promote: bool) -> Tuple[Optional[Dict[str, torch.Tensor]], str]:
    directions = ctx.directions
    args = {}
    for name, value in case.items():
        if isinstance(value, torch.Tensor):
            initial = promised_initial(value)
            value = value.clone()
            if promote and value.dtype in LOW_PRECISION:
                value = value.to(torch.float64)
            if directions.get(name) == "out":
                fill_initial_(value, initial)
        args[name] = value
    with ComputeInFloat64():
        _, error = ctx.call("reference_impl", ctx.challenge.reference_impl, **args)
    if error:
        return None, error
    return {n: args[n] for n, d in directions.items() if d != "in"}, ""


def has_own_comparison(challenge: ChallengeBase) -> bool:
    """True when the challenge overrides ``compare_output`` with a rule of its own."""
    own = getattr(type(challenge), "compare_output", None)
    return own is not None and own is not getattr(ChallengeBase, "compare_output", None)


def _against_exact(ctx: Context, name: str, low: torch.Tensor, high: torch.Tensor,
                   case: Dict[str, Any], label: str) -> Tuple[float, str]:
    """How far the reference's ``low`` output is from its float64 value ``high``: the worst
    element's error as a fraction of the allowed error, and a problem ("" when within)."""
    challenge = ctx.challenge
    if has_own_comparison(challenge):
        # the challenge's own rule, exactly as the grader applies it to a submission
        cmp = compare_output(challenge, name, low.detach().cpu(), high.detach().to("cpu", low.dtype),
                             case)
        if cmp.passed:
            return 0.0, ""
        return float("inf"), (f"on the {label}, the reference's `{name}` fails the challenge's "
                              f"own compare_output against its float64 value: "
                              f"{cmp.describe(challenge.atol, challenge.rtol)}")
    if not low.is_floating_point():
        return 0.0, ""
    atol, rtol = float(challenge.atol), float(challenge.rtol)
    exact = high.detach().to("cpu", torch.float64)
    got = low.detach().to("cpu", torch.float64)
    special = ~torch.isfinite(exact)
    if special.any():
        allow_nan, allow_inf = challenge.nonfinite_allowed(case)
        if (torch.isnan(exact).any() and not allow_nan) or (torch.isinf(exact).any()
                                                              and not allow_inf):
            return 0.0, f"`{name}` computed in float64 has NaN or Inf on the {label}"
        same = (got == exact) | (torch.isnan(got) & torch.isnan(exact))
        if not bool(same[special].all()):
            flat = int(torch.nonzero((special & ~same).reshape(-1))[0])
            return float("inf"), (f"on the {label}, `{name}` is {float(got.reshape(-1)[flat])} at "
                                  f"flat index {flat} where its float64 value is "
                                  f"{float(exact.reshape(-1)[flat])}")
    allowed = atol + rtol * torch.where(special, torch.zeros_like(exact), exact.abs())
    ratio_of = (got - exact).abs() / allowed.clamp_min(1e-300)
    ratio_of = torch.where(special, torch.zeros_like(ratio_of), ratio_of)
    ratio_of = torch.where(torch.isnan(ratio_of), torch.full_like(ratio_of, float("inf")),
                           ratio_of)
    ratio = float(ratio_of.max()) if ratio_of.numel() else 0.0
    if ratio <= 1.0:
        return ratio, ""
    flat = int(torch.argmax(ratio_of))
    return ratio, (f"on the {label}, `{name}` differs from its float64 value by "
                   f"{float((got - exact).abs().reshape(-1)[flat]):.3g} at flat index {flat} "
                   f"(expected {float(exact.reshape(-1)[flat]):.7g}), {ratio:.1f}x the allowed "
                   f"atol={atol:g} + rtol={rtol:g}*|x|")


def check_float64(ctx: Context) -> CheckResult:
    challenge = ctx.challenge
    runs = ctx.reference_runs
    if any(r.error for r in runs):
        return failed("float64", "the reference does not run on every case (see directions)",
                      "fix reference_impl first")
    functional = ctx.cases.labelled(performance=False)
    problems: List[str] = []
    worst = (0.0, "")
    promote: Optional[bool] = None
    first_error = ""
    for (label, case), run in zip(functional, runs):
        allow_nan, allow_inf = challenge.nonfinite_allowed(case)
        for name, tensor in run.outputs.items():
            if ctx.directions.get(name) == "in" or not tensor.is_floating_point():
                continue
            if torch.isnan(tensor).any() and not allow_nan:
                problems.append(f"the reference's `{name}` has NaN on the {label} (set "
                                f"`equal_nan = True` only if NaN is a right answer)")
            if torch.isinf(tensor).any() and not allow_inf:
                problems.append(f"the reference's `{name}` has Inf on the {label}, where no input "
                                f"does (set `allow_inf = True` only if Inf is a right answer)")
        if label == "example":
            continue
        outputs, error = None, ""
        for attempt in ([promote] if promote is not None else [True, False]):
            outputs, error = _float64_outputs(ctx, case, attempt)
            if outputs is not None:
                promote = attempt
                break
            first_error = first_error or error
        if outputs is None:
            return failed("float64", f"could not run the reference in float64 on the {label}: "
                                     f"{first_error}",
                          "let reference_impl accept float64 tensors (assert the dtype only "
                          "when it is not float64), or keep its intermediate results' dtypes "
                          "unasserted (docs/authoring.md, 'float64')")
        for name, high in outputs.items():
            ratio, problem = _against_exact(ctx, name, run.outputs[name], high, case, label)
            if ratio > worst[0]:
                worst = (ratio, f"`{name}` on the {label}")
            if problem:
                problems.append(problem)
    if problems:
        return failed("float64", "; ".join(problems[:3]),
                      "the reference itself must be within tolerance of the exact answer: "
                      "compute in higher precision, reorder the computation (e.g. subtract a "
                      "maximum), or loosen atol/rtol")
    how = "float64 inputs" if promote else "inputs in their own dtypes, float64 arithmetic"
    count = len(functional) - 1
    if has_own_comparison(challenge):
        return passed("float64", f"passes the challenge's compare_output against its float64 "
                                 f"value on all {count} functional cases ({how}); no unexpected NaN or Inf")
    return passed("float64", f"within tolerance of float64 on all {count} functional cases "
                             f"({how}); worst {100 * worst[0]:.1f}% of the allowed error "
                             f"({worst[1] or 'n/a'}); no unexpected NaN or Inf")


def check_float64_performance(ctx: Context) -> CheckResult:
    """The performance case's reference against its float64 value, as ``float64`` does for the
    functional cases. A reference outside its own tolerance there makes the grader fall back to
    the rule 'accuracy against float64' (runner/grader/truth.py): no challenge of this project may
    need it (a failure), a LeetGPU folder is warned."""
    name = "float64-performance"
    case = ctx.cases.performance
    if case is None:
        return skipped(name, "not checked: the performance case was not generated (see the "
                             "performance check)")
    size = case_bytes(case)
    if 2 * size > FLOAT64_PERF_BYTES:
        return skipped(name, f"not checked: the performance case ({fmt_bytes(size)}) is too "
                             f"large to recompute in float64 here (its float64 copy would pass "
                             f"{fmt_bytes(FLOAT64_PERF_BYTES)})")
    run = ctx.run_reference("performance test", case)
    if run.error:
        return failed(name, run.error, "fix reference_impl first")
    outputs, error = None, ""
    for promote in (True, False):
        outputs, error = _float64_outputs(ctx, case, promote)
        if outputs is not None:
            break
    if outputs is None:
        return failed(name, f"could not run the reference in float64 on the performance test: "
                            f"{error}", "let reference_impl accept float64 tensors")
    worst, problems = (0.0, ""), []
    for out_name, high in outputs.items():
        ratio, problem = _against_exact(ctx, out_name, run.outputs[out_name], high, case,
                                        "performance test")
        if ratio > worst[0]:
            worst = (ratio, f"`{out_name}`")
        if problem:
            problems.append(problem)
    if problems:
        return stricter(ctx.format, name, "; ".join(problems[:3]),
                        "the reference misses its own tolerance on the performance case, so the "
                        "grader must fall back to comparing solutions with the float64 answer "
                        "there (the rule 'accuracy against float64'); compute the reference in "
                        "higher precision, reorder it, or loosen atol/rtol")
    return passed(name, f"within tolerance of float64 on the performance case "
                        f"({fmt_bytes(size)}); worst {100 * worst[0]:.1f}% of the allowed error "
                        f"({worst[1] or 'n/a'})")


def _overridden(challenge: ChallengeBase, method: str) -> bool:
    return getattr(type(challenge), method, None) is not getattr(ChallengeBase, method, None)


def check_performance(ctx: Context) -> CheckResult:
    case = ctx.cases.performance if ctx.cases.performance is not None else (
        ctx.meta.performance if ctx.meta_works else None)
    if case is None:
        return failed("performance", "no performance case was generated",
                      "generate_performance_test() must return a case (see generators)")
    size = ctx.performance_bytes if ctx.performance_bytes is not None else case_bytes(case)
    problems: List[str] = []
    notes = ""
    if MEMORY_FACTOR * size > MEMORY_BUDGET_BYTES:
        problems.append(f"the performance case holds {fmt_bytes(size)}; {MEMORY_FACTOR} copies "
                        f"({fmt_bytes(MEMORY_FACTOR * size)}) do not fit in "
                        f"{fmt_bytes(MEMORY_BUDGET_BYTES)}")
    challenge = ctx.challenge
    has_model = _overridden(challenge, "bytes_moved") and _overridden(challenge, "flops")
    if has_model:
        nbytes, error = ctx.call("bytes_moved(performance case)", challenge.bytes_moved, case)
        nflops, error2 = ctx.call("flops(performance case)", challenge.flops, case)
        if error or error2:
            problems.append(error or error2)
        else:
            if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
                problems.append(f"bytes_moved() returned {nbytes!r}; it must be a positive int")
            elif nbytes > size:
                problems.append(f"bytes_moved() = {nbytes:,} exceeds the case's own "
                                f"{size:,} bytes; it should be the fewest bytes a solution "
                                f"must read and write")
            if isinstance(nflops, bool) or not isinstance(nflops, int) or nflops < 0:
                problems.append(f"flops() returned {nflops!r}; it must be an int >= 0")
            if _overridden(challenge, "bytes_written") and isinstance(nbytes, int):
                written, error = ctx.call("bytes_written(performance case)",
                                          challenge.bytes_written, case)
                if error:
                    problems.append(error)
                elif (isinstance(written, bool) or not isinstance(written, int)
                      or not 0 <= written <= nbytes):
                    problems.append(f"bytes_written() returned {written!r}; it must be an int "
                                    f"from 0 to bytes_moved() ({nbytes:,}): the bytes a "
                                    f"solution must write")
    elif ctx.format == "leetgpu":
        notes = "; no bytes_moved/flops (LeetGPU's format has none): bandwidth is not reported"
    else:
        missing = [m for m in ("bytes_moved", "flops") if not _overridden(challenge, m)]
        problems.append(f"the cost model is missing: define {' and '.join(missing)}")
    if problems:
        return failed("performance", "; ".join(problems),
                      f"keep {MEMORY_FACTOR}x the performance case within "
                      f"{fmt_bytes(MEMORY_BUDGET_BYTES)}, and define bytes_moved(test) and "
                      f"flops(test) returning ints for a case")
    model = (f"; bytes_moved = {nbytes:,}, flops = {nflops:,}" if has_model else notes)
    return passed("performance", f"{fmt_bytes(size)} per case, {MEMORY_FACTOR}x fits in "
                                 f"{fmt_bytes(MEMORY_BUDGET_BYTES)}{model}")
