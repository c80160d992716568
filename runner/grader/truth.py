"""Accuracy against the truth, not the reference's rounding.

A float32 reference can itself miss its challenge's tolerance against the exact answer (LeetGPU's
multi-head attention, atol = rtol = 1e-5: on its performance case the reference is outside
1e-5 of the float64 answer on 3% of the elements). A correct solution that rounds differently
then fails against the reference, and only a copy of the reference's own summation order passes.

The rule (applied by :func:`runner.grader.plan.check_outputs` only to an output that failed the
usual comparison, with the challenge's default comparison): the reference is run again in float64
(:class:`runner.authoring.float64.ComputeInFloat64`); if on this case the reference's output is
itself outside the tolerance of that float64 answer, by a factor ``R`` (its worst element's
error over that element's ``atol + rtol * |x|``), then the solution's output is compared with
the float64 answer, element by element, under the tolerance scaled by ``R * TRUTH_MARGIN``:
every element at least as close to the float64 answer, in units of its own tolerance, as the
reference's worst element is. Where the reference is within tolerance of float64 (``R <= 1``),
nothing changes. The report says when the rule was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from runner.authoring.float64 import LOW_PRECISION, ComputeInFloat64
from runner.buffers import fill_initial_, promised_initial
from runner.cases import case_bytes
from runner.challenge import ChallengeBase
from runner.check import Comparison, compare
from runner.policy import MAX_TRUTH_BYTES, TRUTH_MARGIN

RULE = "accuracy against float64"


@dataclass
class TruthCheck:
    comparison: Comparison       # the solution's output against the float64 answer, scaled
    reference_excess: float      # R: the reference's worst error, in tolerances
    scale: float                 # the tolerance's factor used: R * TRUTH_MARGIN

    def note(self, atol: float, rtol: float) -> str:
        return (f"`{self.comparison.name}`: accepted by the rule '{RULE}': on this case the "
                f"reference itself is {self.reference_excess:.3g}x its tolerance from the float64 "
                f"answer, and every element of yours is within {self.scale:.3g}x the tolerance "
                f"(atol={atol * self.scale:.3g} + rtol={rtol * self.scale:.3g}*|x|) of it")


def uses_default_comparison(challenge: Any) -> bool:
    """The rule is defined for the default comparison only (a challenge's own rule is its own)."""
    own = getattr(type(challenge), "compare_output", None)
    return own is None or own is getattr(ChallengeBase, "compare_output", None)


def float64_outputs(challenge: Any, case: Dict[str, Any],
                    directions: Dict[str, str]) -> Optional[Dict[str, torch.Tensor]]:
    """The reference's outputs for ``case`` computed in float64 (on the challenge's device, moved
    to the CPU), or None when it cannot be run that way or the case is too large."""
    if 2 * case_bytes(case) > MAX_TRUTH_BYTES:
        return None
    device = torch.device(getattr(challenge, "device", "cpu"))
    for promote in (True, False):     # float64 inputs, else its own dtypes in float64 arithmetic
        args: Dict[str, Any] = {}
        for name, value in case.items():
            if isinstance(value, torch.Tensor):
                initial = promised_initial(value)
                value = value.detach().to(device).clone()
                if promote and value.dtype in LOW_PRECISION:
                    value = value.to(torch.float64)
                if directions.get(name) == "out":
                    fill_initial_(value, initial)
            args[name] = value
        try:
            with ComputeInFloat64():
                challenge.reference_impl(**args)
        except Exception:  # noqa: BLE001 - a reference that refuses float64: the rule is off
            continue
        return {n: args[n].detach().to("cpu", torch.float64)
                for n, d in directions.items() if d != "in"}
    return None


def excess(values: torch.Tensor, truth: torch.Tensor, atol: float, rtol: float) -> float:
    """The worst element's distance from ``truth``, over its tolerance (inf for NaN, or a
    non-finite value where the truth is finite)."""
    exact = truth.to(torch.float64)
    got = values.detach().to("cpu", torch.float64)
    finite = torch.isfinite(exact)
    if not bool(finite.all()):
        return float("inf")
    ratio = (got - exact).abs() / (atol + rtol * exact.abs()).clamp_min(1e-300)
    ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, float("inf")), ratio)
    return float(ratio.max()) if ratio.numel() else 0.0


def against_truth(name: str, got: torch.Tensor, expected: torch.Tensor, truth: torch.Tensor,
                  atol: float, rtol: float) -> Optional[TruthCheck]:
    """The rule for one output; None where it does not apply (the reference is within its
    tolerance of float64 here, or the outputs are not comparable floats)."""
    if (not expected.is_floating_point() or got.shape != expected.shape
            or got.dtype != expected.dtype or truth.shape != expected.shape):
        return None
    r = excess(expected, truth, atol, rtol)
    if not (1.0 < r < float("inf")):
        return None
    scale = r * TRUTH_MARGIN
    cmp = compare(name, got.detach().to("cpu", torch.float64), truth, atol * scale, rtol * scale)
    return TruthCheck(cmp, r, scale)
