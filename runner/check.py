"""Comparing a solution's outputs with the reference's, and describing mismatches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

MAX_EXAMPLES = 5      # the worst few mismatched elements kept (JSON: `examples`)
SHOWN_WORST = 3       # of them, in the text
# the bits of the NaN that poisons a float output before a call (a quiet NaN with a payload of
# ours), so an expected NaN is never matched by an element that was not written
NAN_POISON_BITS = {torch.float16: 0x7E5B, torch.bfloat16: 0x7FDB, torch.float32: 0x7FDB5B5B,
                   torch.float64: 0x7FFB5B5B5B5B5B5B}
_INT_OF_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def unwritten_nan(tensor: torch.Tensor) -> torch.Tensor:
    """A mask of the elements still holding the poison NaN (flattened)."""
    bits = NAN_POISON_BITS.get(tensor.dtype)
    if bits is None:
        return torch.zeros(tensor.numel(), dtype=torch.bool)
    raw = tensor.detach().to("cpu").contiguous().view(_INT_OF_SIZE[tensor.element_size()])
    return (raw == bits).reshape(-1)


@dataclass
class Element:
    index: List[int]
    got: float
    expected: float
    abs_error: float
    rel_error: float
    allowed: float = 0.0          # its tolerance: atol + rtol * |expected|

    def line(self) -> str:
        return (f"{_fmt_index(self.index)}: got {self.got:.7g}, expected {self.expected:.7g} "
                f"(abs err {self.abs_error:.3g}, allowed {self.allowed:.3g})")


@dataclass
class Comparison:
    name: str
    passed: bool
    total: int
    mismatches: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst: Optional[Element] = None          # the furthest past its tolerance
    examples: List[Element] = field(default_factory=list)   # the worst few, worst first
    largest: Optional[Element] = None        # the largest abs err (may be within a wider tolerance)
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
        if w is None:
            return text
        text += f"; worst (furthest past its tolerance) at {w.line()}"
        for e in self.examples[1:SHOWN_WORST]:
            text += f"\n  next worst at {e.line()}"
        shown = [e.index for e in self.examples[:SHOWN_WORST]]
        big = self.largest
        if big is not None and big.index not in shown:
            text += (f"\n  the largest abs err, {big.abs_error:.3g} at {_fmt_index(big.index)} "
                     f"(expected {big.expected:.7g}), is less far past its tolerance "
                     f"({big.allowed:.3g})" if big.abs_error > big.allowed else
                     f"\n  the largest abs err, {big.abs_error:.3g} at {_fmt_index(big.index)}, "
                     f"is within its tolerance ({big.allowed:.3g}, as |expected| is "
                     f"{abs(big.expected):.3g})")
        return text


def _fmt_index(index: List[int]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _element(flat_index: int, shape, got: torch.Tensor, exp: torch.Tensor,
             abs_err: torch.Tensor, rel_err: torch.Tensor, allowed: torch.Tensor) -> Element:
    index = [int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape)] if shape else []
    return Element(index=index, got=float(got[flat_index]), expected=float(exp[flat_index]),
                   abs_error=float(abs_err[flat_index]), rel_error=float(rel_err[flat_index]),
                   allowed=float(allowed[flat_index]))


def _first_index(mask: torch.Tensor, shape) -> str:
    flat = int(torch.nonzero(mask.reshape(-1))[0])
    index = [int(i) for i in torch.unravel_index(torch.tensor(flat), shape)] if shape else []
    return _fmt_index(index)


def compare(name: str, got: torch.Tensor, expected: torch.Tensor, atol: float,
            rtol: float, allow_nan: bool = False, allow_inf: bool = False) -> Comparison:
    """``torch.testing.assert_close``'s rule, element by element: a finite expected value is
    matched within ``|got - expected| <= atol + rtol * |expected|`` (NaN or Inf never are); an
    expected ±inf only by the same infinity; an expected NaN only by NaN, and only where
    ``allow_nan`` (the challenge's ``equal_nan``). A reference output holding NaN, or Inf
    where ``allow_inf`` is False, is a bug in the challenge and is reported as such."""
    total = expected.numel()
    if got.shape != expected.shape:
        return Comparison(name, False, total,
                          problem=f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    if got.dtype != expected.dtype:
        return Comparison(name, False, total, problem=f"dtype {got.dtype}, expected {expected.dtype}")
    shape = tuple(expected.shape)
    exp = expected.detach().to("cpu", torch.float64).reshape(-1)
    out = got.detach().to("cpu", torch.float64).reshape(-1)
    exp_nan, exp_inf = torch.isnan(exp), torch.isinf(exp)
    if exp_nan.any() and not allow_nan:
        return Comparison(name, False, total, problem=(
            f"the reference output has NaN (first at {_first_index(exp_nan, shape)}): a bug in "
            f"the challenge, not in your solution (a challenge whose answers may be NaN says so "
            f"with `equal_nan = True`)"))
    if exp_inf.any() and not allow_inf:
        return Comparison(name, False, total, problem=(
            f"the reference output has Inf (first at {_first_index(exp_inf, shape)}) although "
            f"no input does: a bug in the challenge, not in your solution (a challenge whose "
            f"answers may be infinite says so with `allow_inf = True`)"))
    finite = ~(exp_nan | exp_inf)
    same_special = (exp_inf & (out == exp)) | (exp_nan & torch.isnan(out))
    if allow_nan and exp_nan.any():
        same_special &= ~unwritten_nan(got)
    diff = (out - exp).abs()
    abs_err = torch.where(finite, diff, torch.where(same_special, torch.zeros_like(diff),
                                                    torch.full_like(diff, float("inf"))))
    abs_err = torch.where(torch.isnan(abs_err), torch.full_like(abs_err, float("inf")), abs_err)
    allowed = atol + rtol * torch.where(finite, exp.abs(), torch.zeros_like(exp))
    rel_err = abs_err / torch.where(finite, exp.abs(), torch.ones_like(exp)).clamp_min(
        torch.finfo(torch.float64).tiny)
    rel_err = torch.where(torch.isnan(rel_err), torch.full_like(rel_err, float("inf")), rel_err)
    bad = torch.where(finite, ~(diff <= allowed), ~same_special)  # NaN compares False: bad
    mismatches = int(bad.sum())
    result = Comparison(name, mismatches == 0, total, mismatches=mismatches,
                        max_abs_error=float(abs_err.max()) if total else 0.0,
                        max_rel_error=float(rel_err.max()) if total else 0.0)
    if mismatches:
        # worst relative to the allowed error, so one huge value doesn't hide behind rtol: the
        # few furthest past their tolerance, worst first (ties: the first index)
        excess = abs_err / allowed.clamp_min(torch.finfo(torch.float64).tiny)
        ranked = torch.where(bad, excess, torch.full_like(excess, -1.0))
        k = min(MAX_EXAMPLES, mismatches)
        order = torch.sort(ranked, descending=True, stable=True).indices[:k] if total <= 1 << 16 \
            else _top(ranked, k)
        result.examples = [_element(int(f), shape, out, exp, abs_err, rel_err, allowed)
                           for f in order.tolist()]
        result.worst = result.examples[0]
        largest = int(torch.argmax(abs_err))
        result.largest = _element(largest, shape, out, exp, abs_err, rel_err, allowed)
    return result


def _top(ranked: torch.Tensor, k: int) -> torch.Tensor:
    """The flat indices of the ``k`` largest of ``ranked``, largest first, ties by index."""
    values = torch.topk(ranked, k).values
    floor = values[-1]
    candidates = torch.nonzero(ranked >= floor).reshape(-1)
    inner = torch.sort(ranked[candidates], descending=True, stable=True).indices[:k]
    return candidates[inner]


def inputs_hold_inf(case: Dict[str, Any], directions: Dict[str, str]) -> bool:
    """True when a floating-point input of ``case`` ("in" or "inout") holds ±inf: an infinite
    answer is then no sign of a broken reference (e.g. +inf for "no path", a max over -inf)."""
    for name, value in case.items():
        if directions.get(name, "in") in ("in", "inout") and isinstance(value, torch.Tensor) \
                and value.is_floating_point() and value.device.type != "meta" \
                and bool(torch.isinf(value).any()):
            return True
    return False


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
                       rtol: float, allow_nan: bool = False,
                       allow_inf: bool = False) -> Comparison:
    """The rule used unless a challenge states its own: floats as :func:`compare`, every other
    dtype bit for bit."""
    if expected.is_floating_point():
        return compare(name, got, expected, atol, rtol, allow_nan, allow_inf)
    return compare_exact(name, got, expected)
