"""Checks of the class itself: attributes and methods, the signature against the reference's
parameters, the generated cases' types, and the directions against what the reference writes."""

from __future__ import annotations

import ctypes
import inspect
from typing import Any, Dict, List, Optional

import torch

from runner.authoring.context import Context
from runner.cases import GENERATORS
from runner.authoring.results import CheckResult, failed, passed
from runner.challenge import ChallengeBase, is_object_type, is_pointer, is_tensor_type

ATTRIBUTES = ("name", "atol", "rtol", "num_gpus", "access_tier")
METHODS = ("reference_impl", "get_solve_signature") + GENERATORS
ACCESS_TIERS = ("free", "premium")
DIRECTIONS = ("in", "out", "inout")

# the ctypes element type of a pointer -> the tensor dtypes it may carry
_POINTER_DTYPES = [
    (ctypes.c_float, (torch.float32,)),
    (ctypes.c_double, (torch.float64,)),
    (ctypes.c_int8, (torch.int8,)),
    (ctypes.c_uint8, (torch.uint8, torch.bool)),
    (ctypes.c_bool, (torch.bool,)),
    (ctypes.c_int16, (torch.int16, torch.float16, torch.bfloat16)),
    (ctypes.c_uint16, (torch.float16, torch.bfloat16)),
    (ctypes.c_int32, (torch.int32,)),
    (ctypes.c_uint32, (torch.uint32,) if hasattr(torch, "uint32") else ()),
    (ctypes.c_int64, (torch.int64,)),
    (ctypes.c_uint64, (torch.uint64,) if hasattr(torch, "uint64") else ()),
]
_INTEGER_SCALARS = (ctypes.c_int8, ctypes.c_uint8, ctypes.c_int16, ctypes.c_uint16,
                    ctypes.c_int32, ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64,
                    ctypes.c_size_t, ctypes.c_ssize_t, ctypes.c_bool)
_FLOAT_SCALARS = (ctypes.c_float, ctypes.c_double)


def dtypes_for_pointer(ctype: Any) -> Optional[tuple]:
    element = ctype._type_
    for c_type, dtypes in _POINTER_DTYPES:
        if element is c_type or (isinstance(element, type) and issubclass(element, c_type)):
            return dtypes
    return None


def ctype_name(ctype: Any) -> str:
    if is_pointer(ctype):
        return f"POINTER({ctype_name(ctype._type_)})"
    if isinstance(ctype, type) and not issubclass(ctype, ctypes._SimpleCData):
        return f"{ctype.__module__.split('.')[0]}.{ctype.__qualname__}"   # torch.Tensor
    return getattr(ctype, "__name__", repr(ctype))


def check_load(ctx: Context) -> CheckResult:
    if ctx.challenge is None:
        return failed("load", f"challenge.py did not load: {ctx.load_error}",
                      "challenge.py must import cleanly and define `class Challenge` whose "
                      "constructor takes no arguments")
    return passed("load", f"{type(ctx.challenge).__name__} loaded from {ctx.source.name} "
                          f"({ctx.format} format)")


def check_class(ctx: Context) -> CheckResult:
    challenge = ctx.challenge
    problems: List[str] = []
    values: Dict[str, Any] = {}
    for attr in ATTRIBUTES:
        if not hasattr(challenge, attr):
            problems.append(f"`{attr}` is missing")
            continue
        values[attr] = getattr(challenge, attr)
    if "name" in values and not (isinstance(values["name"], str) and values["name"].strip()):
        problems.append(f"`name` must be a non-empty string, not {values['name']!r}")
    for tol in ("atol", "rtol"):
        value = values.get(tol)
        if tol in values and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value >= 0):
            problems.append(f"`{tol}` must be a number >= 0, not {value!r}")
    if "num_gpus" in values and (isinstance(values["num_gpus"], bool)
                                 or not isinstance(values["num_gpus"], int)
                                 or values["num_gpus"] < 1):
        problems.append(f"`num_gpus` must be an integer >= 1, not {values['num_gpus']!r}")
    if "access_tier" in values and values["access_tier"] not in ACCESS_TIERS:
        problems.append(f"`access_tier` must be one of {', '.join(map(repr, ACCESS_TIERS))}, "
                        f"not {values['access_tier']!r}")
    for method in METHODS:
        fn = getattr(type(challenge), method, None)
        if not callable(fn) or getattr(fn, "__isabstractmethod__", False):
            problems.append(f"method `{method}` is missing")
        elif getattr(ChallengeBase, method, None) is fn:
            problems.append(f"method `{method}` is not overridden")
    if problems:
        return failed("class", "; ".join(problems),
                      "set name, atol, rtol, num_gpus and access_tier (in __init__ through "
                      "super().__init__(...) or as class attributes) and define "
                      + ", ".join(METHODS))
    return passed("class", f"{', '.join(ATTRIBUTES)} set (atol={values['atol']:g}, "
                           f"rtol={values['rtol']:g}); the {len(METHODS)} methods are defined")


def reference_parameters(challenge: ChallengeBase) -> List[str]:
    params = inspect.signature(challenge.reference_impl).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                   p.KEYWORD_ONLY)]


def check_signature(ctx: Context) -> CheckResult:
    sig, error = ctx._signature
    if sig is None:
        return failed("signature", error, "return {name: (ctypes type, direction)} from "
                                          "get_solve_signature()")
    problems = []
    for name, (ctype, direction) in sig.items():
        if direction not in DIRECTIONS:
            problems.append(f"`{name}` has direction {direction!r}; use 'in', 'out' or 'inout'")
        if is_pointer(ctype):
            if dtypes_for_pointer(ctype) is None:
                problems.append(f"`{name}` points to {ctype_name(ctype._type_)}, which no tensor "
                                f"dtype matches")
        elif is_tensor_type(ctype):
            pass                       # torch.Tensor: a tensor of any dtype
        elif is_object_type(ctype):
            if direction != "in":
                problems.append(f"`{name}` ({ctype_name(ctype)}) has direction {direction!r}; "
                                f"an object passed as it is can only be 'in'")
        elif ctype in _INTEGER_SCALARS or ctype in _FLOAT_SCALARS:
            if direction != "in":
                problems.append(f"scalar `{name}` has direction {direction!r}; a scalar is "
                                f"passed by value, so it can only be 'in'")
        else:
            problems.append(f"`{name}` has type {ctype!r}; use ctypes.POINTER(<element type>) "
                            f"(or torch.Tensor) for tensors, a ctypes integer or float type for "
                            f"scalars, or a class such as torch.nn.Module for an object")
    params = reference_parameters(ctx.challenge)
    names = list(sig)
    if names != params:
        problems.append(f"get_solve_signature() names ({', '.join(names)}) but reference_impl "
                        f"takes ({', '.join(params)})")
    if not any(d in ("out", "inout") for _, d in sig.values()):
        problems.append("no parameter is an output ('out' or 'inout')")
    if problems:
        return failed("signature", "; ".join(problems),
                      "get_solve_signature() must list exactly reference_impl's parameters, in "
                      "the same order, each as (ctypes type, 'in' | 'out' | 'inout')")
    return passed("signature", f"{len(names)} parameters, the same as reference_impl's, in order")


def check_generators(ctx: Context) -> CheckResult:
    generated = ctx.cases
    if generated.errors:
        return failed("generators", "; ".join(generated.errors.values()),
                      "each generator must return a dict (the functional one a non-empty list "
                      "of dicts) of parameter name -> tensor or number")
    counts = f"example, {len(generated.functional)} functional"
    counts += ", performance" if generated.performance is not None else ""
    return passed("generators", f"generated {counts} cases"
                  + (f" ({'; '.join(generated.notes)})" if generated.notes else ""))


def _type_problems(label: str, case: Dict[str, Any], sig: Dict[str, Any]) -> List[str]:
    problems = []
    missing = [n for n in sig if n not in case]
    extra = [n for n in case if n not in sig]
    if missing:
        problems.append(f"{label} lacks {', '.join(missing)}")
    if extra:
        problems.append(f"{label} has {', '.join(extra)}, which the signature does not list")
    for name, (ctype, _) in sig.items():
        if name not in case:
            continue
        value = case[name]
        if is_pointer(ctype):
            dtypes = dtypes_for_pointer(ctype) or ()
            if not isinstance(value, torch.Tensor):
                problems.append(f"{label}: `{name}` is a {type(value).__name__} but the signature "
                                f"says {ctype_name(ctype)} (a tensor)")
            elif value.dtype not in dtypes:
                problems.append(f"{label}: `{name}` is {value.dtype} but the signature says "
                                f"{ctype_name(ctype)} ({' or '.join(map(str, dtypes))})")
        elif is_tensor_type(ctype) or is_object_type(ctype):
            if not isinstance(value, ctype):
                problems.append(f"{label}: `{name}` is a {type(value).__name__} but the signature "
                                f"says {ctype_name(ctype)}")
        elif ctype in _INTEGER_SCALARS:
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{label}: `{name}` is a {type(value).__name__} but the signature "
                                f"says {ctype_name(ctype)} (a Python int)")
        elif ctype in _FLOAT_SCALARS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{label}: `{name}` is a {type(value).__name__} but the signature "
                                f"says {ctype_name(ctype)} (a Python float)")
    return problems


def check_types(ctx: Context) -> CheckResult:
    sig = ctx.signature
    labelled = ctx.cases.labelled()
    if ctx.meta_works and not ctx.performance_fits:
        labelled.append(("performance test", ctx.meta.performance))
    problems: List[str] = []
    for label, case in labelled:
        problems += _type_problems(label, case, sig)
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        return failed("types", "; ".join(problems[:4]) + more,
                      "every case must hold exactly the signature's parameters: a tensor of the "
                      "pointer's element type for each POINTER, a Python int for each integer")
    return passed("types", f"all {len(labelled)} cases match the signature's types")


def check_directions(ctx: Context) -> CheckResult:
    runs = ctx.reference_runs
    errors = [r.error for r in runs if r.error]
    if errors:
        return failed("directions", errors[0] + (f" (and on {len(errors) - 1} more cases)"
                                                 if len(errors) > 1 else ""),
                      "reference_impl must run on every generated case")
    directions = ctx.directions
    written = {name: False for name, d in directions.items() if d == "out"}
    problems = []
    for run in runs:
        for name in run.modified:
            if directions.get(name) == "in":
                problems.append(f"the reference writes `{name}` (on the {run.label}), which the "
                                f"signature marks 'in'")
            if name in written:
                written[name] = True
    problems = list(dict.fromkeys(problems))
    for name, was_written in written.items():
        if not was_written:
            problems.append(f"the reference never writes `{name}`, which the signature marks "
                            f"'out'")
    if problems:
        return failed("directions", "; ".join(problems[:3]),
                      "mark a parameter 'out' (or 'inout') exactly when the reference writes it; "
                      "a reference that needs scratch space should use its own tensors")
    outs = [n for n, d in directions.items() if d != "in"]
    return passed("directions", f"the reference writes {', '.join(outs)} and no input "
                                f"(on {len(runs)} cases)")
