"""Checks of the generated cases themselves: they follow ``self.device``, and they are the same
every time they are generated (both the grader and the sandboxed solution side regenerate
them from the seed, so their inputs must agree bit for bit)."""

from __future__ import annotations

from typing import Any, Dict, List

import torch

from runner.authoring.context import Context, Generated, tensors_of
from runner.authoring.results import CheckResult, failed, passed
from runner.check import bitwise_equal


def check_device(ctx: Context) -> CheckResult:
    meta = ctx.meta
    if meta.errors:
        wrong = [f"{label}: `{name}` is on {t.device}" for label, case in ctx.cases.labelled()
                 for name, t in tensors_of(case).items() if t.device.type != ctx.device.type]
        if wrong:
            return failed("device", "; ".join(wrong[:3]),
                          "allocate every tensor on self.device (e.g. torch.empty(..., "
                          "device=self.device) or tensor.to(self.device))")
        return _partial(ctx, next(iter(meta.errors.values())))
    wrong = [f"{label}: `{name}` is on {t.device.type}" for label, case in meta.labelled()
             for name, t in tensors_of(case).items() if t.device.type != "meta"]
    if wrong:
        return failed("device", "with self.device set to 'meta', " + "; ".join(wrong[:3]),
                      "allocate every tensor on self.device (e.g. torch.empty(..., "
                      "device=self.device) or tensor.to(self.device)), never on a fixed device")
    count = sum(len(tensors_of(c)) for _, c in meta.labelled())
    result = passed("device", f"all {count} tensors follow self.device (generated on 'meta' "
                              f"and on {ctx.device.type})")
    if ctx.format == "leetgpu":
        result.hint = ("LeetGPU format: tensors its code puts on 'cuda' are moved to the grading "
                       "device, so a hard-coded device='cuda' passes too")
    return result


def _partial(ctx: Context, error: str) -> CheckResult:
    result = passed("device", f"every tensor is on {ctx.device.type} (the generators could not "
                              f"run on 'meta', so a fixed device={ctx.device.type!r} would go "
                              f"unnoticed)")
    result.hint = f"on 'meta': {error}"
    return result


def _differences(label: str, first: Dict[str, Any], second: Dict[str, Any],
                 directions: Dict[str, str]) -> List[str]:
    if set(first) != set(second):
        return [f"{label}: the parameters differ between calls"]
    out = []
    for name, value in first.items():
        other = second[name]
        if isinstance(value, torch.Tensor):
            if not isinstance(other, torch.Tensor):
                out.append(f"{label}: `{name}` is a tensor, then a {type(other).__name__}")
            elif directions.get(name) == "out":
                # an output's contents are never read (the grader poisons it): only its
                # shape and dtype must repeat, so torch.empty is fine
                if (value.shape, value.dtype) != (other.shape, other.dtype):
                    out.append(f"{label}: `{name}` is {tuple(value.shape)} {value.dtype}, then "
                               f"{tuple(other.shape)} {other.dtype}")
            elif not bitwise_equal(value, other):
                out.append(f"{label}: `{name}` differs")
        elif isinstance(value, torch.nn.Module):
            mine, theirs = value.state_dict(), getattr(other, "state_dict", dict)()
            if set(mine) != set(theirs) or not all(bitwise_equal(mine[k], theirs[k])
                                                   for k in mine):
                out.append(f"{label}: `{name}`'s parameters differ")
        elif value != other:
            out.append(f"{label}: `{name}` = {value!r}, then {other!r}")
    return out


def check_determinism(ctx: Context) -> CheckResult:
    first: Generated = ctx.cases
    second = ctx.generate(ctx.device, performance=first.performance is not None)
    if second.errors:
        return failed("determinism", "the second call failed: " + "; ".join(second.errors.values()),
                      "generators must succeed every time they are called")
    a, b = first.labelled(), second.labelled()
    problems: List[str] = []
    if len(a) != len(b):
        problems.append(f"the first call made {len(a)} cases, the second {len(b)}")
    for (label, x), (_, y) in zip(a, b):
        problems += _differences(label, x, y, ctx.directions)
    if problems:
        return failed("determinism", "two calls gave different cases: " + "; ".join(problems[:3]),
                      "draw random data from self.generator(seed) with a fixed seed per case "
                      "(or from torch's global generator, which the grader seeds); not from "
                      "Python's random, NumPy's global generator, the clock, or state kept "
                      "between calls")
    return passed("determinism", f"two calls gave identical cases ({len(a)} compared bit for bit)")
