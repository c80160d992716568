"""The plan of a grading: the cases the submission will be asked, the answers they must get
(the reference's, computed in the grader's process and never sent), and the check of a
reported answer against them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.buffers import directions_of
from runner.cases import case_bytes, fresh_seed, performance_case, test_cases
from runner.challenge import ChallengeBase
from runner.check import Comparison, default_comparison
from runner.policy import INTERPRETED_PERF_BYTES
from runner.report import TestReport
from runner.grader.truth import against_truth, float64_outputs, uses_default_comparison


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
    accepted_by_rule: List[str] = []
    truth: Optional[Dict[str, torch.Tensor]] = None
    for out_name, exp in expected.items():
        got = outputs.get(out_name)
        if not isinstance(got, torch.Tensor):
            problems.append(f"`{out_name}`: no output was reported")
            continue
        cmp = compare_output(challenge, out_name, got, exp, case)
        if not cmp.passed and exp.is_floating_point() and uses_default_comparison(challenge):
            # the reference's own rounding may be what this output misses (runner.grader.truth)
            if truth is None:
                truth = float64_outputs(challenge, case,
                                        directions_of(challenge.get_solve_signature())) or {}
            ruled = (against_truth(out_name, got, exp, truth[out_name], challenge.atol,
                                   challenge.rtol) if out_name in truth else None)
            if ruled is not None and ruled.comparison.passed:
                accepted_by_rule.append(ruled.note(challenge.atol, challenge.rtol))
                cmp = ruled.comparison
        report.total += cmp.total
        report.mismatches += cmp.mismatches
        report.max_abs_error = max(report.max_abs_error or 0.0, cmp.max_abs_error)
        report.max_rel_error = max(report.max_rel_error or 0.0, cmp.max_rel_error)
        if not cmp.passed:
            problems.append(cmp.describe(challenge.atol, challenge.rtol))
            if report.worst is None and cmp.worst is not None:
                report.worst = {"output": out_name, **vars(cmp.worst)}
                report.examples = [{"output": out_name, **vars(e)} for e in cmp.examples]
                if cmp.largest is not None:
                    report.largest = {"output": out_name, **vars(cmp.largest)}
    for input_name in payload.get("modified_inputs", [])[:8]:
        problems.append(f"your solution modified the input `{input_name}`; inputs must be "
                        f"left unchanged (write only to outputs)")
    problems += [f"out-of-bounds write: {msg[:300]}" for msg in payload.get("guard_damage", [])[:8]]
    if problems:
        report.passed = False
        report.message = "\n".join(problems)
    elif accepted_by_rule:
        report.message = "\n".join(accepted_by_rule)
    return report


# -- the plan ---------------------------------------------------------------------------------

@dataclass
class Plan:
    cases: List[Tuple[str, Dict[str, Any]]]
    expected: List[Dict[str, torch.Tensor]]
    perf_copies: int = 1
    perf_case: Optional[Dict[str, Any]] = None           # copy 0, as generated (CPU)
    perf_expected: Optional[Dict[str, torch.Tensor]] = None
    fresh_case: Optional[Dict[str, Any]] = None
    fresh_expected: Optional[Dict[str, torch.Tensor]] = None
    perf_left_out: str = ""               # why a submit runs no performance case ('' if it does)

    @property
    def performance(self) -> bool:
        """Whether the performance case (and the fresh-inputs check) is part of the grading."""
        return self.perf_case is not None



def rotation_count(nbytes: int, device: torch.device) -> int:
    """Independent input copies so that consecutive timed calls never share cached data."""
    if device.type != "cuda":
        return 2
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20)
    free, _ = torch.cuda.mem_get_info(device)
    wanted = max(2, math.ceil(2 * l2 / max(nbytes, 1)))
    affordable = max(1, int(0.25 * free // max(3 * nbytes, 1)))
    return max(1, min(wanted, affordable, 8))


def release(case: Dict[str, Any]) -> Dict[str, Any]:
    """Keep only the ints and the CPU copies' shapes: the child regenerates the tensors."""
    return {k: (v if not isinstance(v, torch.Tensor) else v.to("cpu")) for k, v in case.items()}


def make_plan(challenge: ChallengeBase, action: str, seed: int, device: torch.device,
              interpreted: bool = False) -> Plan:
    """The cases of ``action`` under grading ``seed`` and the reference's outputs for them.
    ``interpreted``: the solution runs under Triton's CPU interpreter, which leaves a large
    performance case out (:attr:`Plan.perf_left_out` says so)."""
    directions = directions_of(challenge.get_solve_signature())
    cases = test_cases(challenge, action, seed)
    plan = Plan(cases=[(n, release(c)) for n, c in cases],
                expected=[reference_outputs(challenge, c, directions) for _, c in cases])
    del cases
    if action == "submit":
        first = performance_case(challenge, seed)
        nbytes = case_bytes(first)
        if interpreted and nbytes > INTERPRETED_PERF_BYTES:
            plan.perf_left_out = (f"the performance case was left out: Triton's CPU interpreter "
                                  f"would take minutes on its {nbytes / 2**20:,.0f} MiB; on a GPU "
                                  f"it is run, checked and timed")
            return plan     # on the CPU: no GPU memory to give back
        plan.perf_copies = rotation_count(nbytes, device)
        plan.perf_expected = reference_outputs(challenge, first, directions)
        plan.perf_case = release(first)
        del first
        fresh = performance_case(challenge, fresh_seed(seed))
        plan.fresh_expected = reference_outputs(challenge, fresh, directions)
        plan.fresh_case = release(fresh)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # leave the GPU's memory to the submission
    return plan

