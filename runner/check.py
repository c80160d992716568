"""Comparing a solution's outputs with the reference's, and describing mismatches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch

MAX_EXAMPLES = 5


@dataclass
class Element:
    index: List[int]
    got: float
    expected: float
    abs_error: float
    rel_error: float


@dataclass
class Comparison:
    name: str
    passed: bool
    total: int
    mismatches: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst: Optional[Element] = None
    examples: List[Element] = field(default_factory=list)
    problem: str = ""  # a structural problem (shape, dtype, NaN in the reference) if any

    def describe(self, atol: float, rtol: float) -> str:
        if self.problem:
            return f"`{self.name}`: {self.problem}"
        if self.passed:
            return f"`{self.name}`: all {self.total} elements within tolerance"
        w = self.worst
        text = (f"`{self.name}`: {self.mismatches} of {self.total} elements "
                f"({100.0 * self.mismatches / max(self.total, 1):.2f}%) differ by more than "
                f"atol={atol:g} + rtol={rtol:g}*|expected|")
        if w is not None:
            text += (f"; worst at {_fmt_index(w.index)}: got {w.got:.7g}, expected "
                     f"{w.expected:.7g} (abs err {w.abs_error:.3g}, rel err {w.rel_error:.3g})")
        return text


def _fmt_index(index: List[int]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _element(flat_index: int, shape, got: torch.Tensor, exp: torch.Tensor,
             abs_err: torch.Tensor, rel_err: torch.Tensor) -> Element:
    index = [int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape)] if shape else []
    return Element(index=index, got=float(got[flat_index]), expected=float(exp[flat_index]),
                   abs_error=float(abs_err[flat_index]), rel_error=float(rel_err[flat_index]))


def compare(name: str, got: torch.Tensor, expected: torch.Tensor, atol: float,
            rtol: float) -> Comparison:
    """Elementwise ``|got - expected| <= atol + rtol * |expected|``; NaN or Inf never pass
    where the reference is finite, and a non-finite reference is itself an error."""
    total = expected.numel()
    if got.shape != expected.shape:
        return Comparison(name, False, total,
                          problem=f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    if got.dtype != expected.dtype:
        return Comparison(name, False, total, problem=f"dtype {got.dtype}, expected {expected.dtype}")
    exp = expected.detach().to("cpu", torch.float64).reshape(-1)
    out = got.detach().to("cpu", torch.float64).reshape(-1)
    if not torch.isfinite(exp).all():
        return Comparison(name, False, total, problem="the reference output has NaN or Inf "
                          "(a bug in the challenge, not in your solution)")
    abs_err = (out - exp).abs()
    rel_err = abs_err / exp.abs().clamp_min(torch.finfo(torch.float64).tiny)
    bad = ~(abs_err <= atol + rtol * exp.abs())  # NaN compares False, so it is bad
    abs_err = torch.where(torch.isnan(abs_err), torch.full_like(abs_err, float("inf")), abs_err)
    rel_err = torch.where(torch.isnan(rel_err), torch.full_like(rel_err, float("inf")), rel_err)
    mismatches = int(bad.sum())
    result = Comparison(name, mismatches == 0, total, mismatches=mismatches,
                        max_abs_error=float(abs_err.max()) if total else 0.0,
                        max_rel_error=float(rel_err.max()) if total else 0.0)
    if mismatches:
        # worst relative to the allowed error, so one huge value doesn't hide behind rtol
        excess = abs_err / (atol + rtol * exp.abs())
        worst = int(torch.argmax(torch.where(bad, excess, torch.zeros_like(excess))))
        result.worst = _element(worst, tuple(expected.shape), out, exp, abs_err, rel_err)
        for flat in torch.nonzero(bad).reshape(-1)[:MAX_EXAMPLES].tolist():
            result.examples.append(_element(flat, tuple(expected.shape), out, exp, abs_err, rel_err))
    return result


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` hold the same bits (NaN payloads included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == torch.bool:
        return bool(torch.equal(a, b))
    as_int = _SAME_SIZE_INT[a.element_size()]
    return bool(torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int)))


def compare_exact(name: str, got: torch.Tensor, expected: torch.Tensor) -> Comparison:
    """Exact comparison (integer outputs); the report has the same shape as :func:`compare`."""
    if bitwise_equal(got, expected):
        return Comparison(name, True, expected.numel())
    return compare(name, got, expected, 0.0, 0.0)


def default_comparison(name: str, got: torch.Tensor, expected: torch.Tensor, atol: float,
                       rtol: float) -> Comparison:
    """The rule used unless a challenge states its own: floats within ``atol + rtol *
    |expected|``, every other dtype bit for bit."""
    if expected.is_floating_point():
        return compare(name, got, expected, atol, rtol)
    return compare_exact(name, got, expected)
