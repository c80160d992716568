"""Constraints as the challenge states them, and the checks built on them.

challenge.html's Constraints list is the statement, in forms this module reads:
``1 ≤ num_heads ≤ 64``, ``N < 1,000``, ``head_dim is a multiple of 8``,
``k_scale and v_scale are positive`` (> 0), ``... non-negative`` (≥ 0), plus the bullet
``Performance is measured with num_heads = 32, ...``. Bullets in other words (``A and B have
the same length``) are prose for people and are not checked.

Each statement is read into a rule, parameter name -> ``{"min" | "max" (inclusive), "gt" | "lt"
(exclusive), "multiple_of": bound}``; a bound may name another scalar parameter
(``1 ≤ kernel_size ≤ input_size``), and a rule on a tensor holds for every element.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.authoring import html as html_mod
from runner.authoring.context import Context, fmt_bytes
from runner.cases import case_bytes
from runner.authoring.results import CheckResult, failed, passed, skipped, stricter
from runner.challenge import is_object_type, is_tensor_type
from runner.policy import REALISTIC_FRACTION

Rule = Dict[str, Any]
Rules = Dict[str, Rule]

_SYMBOL = {"min": "≥", "max": "≤", "gt": ">", "lt": "<"}


def describe_rule(name: str, rule: Rule) -> str:
    lower = ("min", rule["min"]) if "min" in rule else ("gt", rule["gt"]) if "gt" in rule else None
    upper = ("max", rule["max"]) if "max" in rule else ("lt", rule["lt"]) if "lt" in rule else None
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else (f"{v:g}" if isinstance(v, float) else str(v))
    if lower and upper:
        text = (f"{fmt(lower[1])} {'≤' if lower[0] == 'min' else '<'} {name} "
                f"{'≤' if upper[0] == 'max' else '<'} {fmt(upper[1])}")
    elif lower or upper:
        key, value = lower or upper
        text = f"{name} {_SYMBOL[key]} {fmt(value)}"
    else:
        text = name
    if "multiple_of" in rule:
        text += f", a multiple of {fmt(rule['multiple_of'])}"
    return text


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def normalize(rules: Rules) -> Rules:
    return {name: {k: _number(v) for k, v in rule.items()} for name, rule in rules.items()}


# -- challenge.html's Constraints list ----------------------------------------------------------

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*\^\s*[-+]?\d+)?"
_IDENT = r"[A-Za-z_]\w*"
_OPERAND = rf"(?:{_NUM}|{_IDENT})"
_LE = r"(?:≤|<=|<)"
_GE = r"(?:≥|>=|>)"
_NOT_PRODUCT = r"(?<![×*·/+-])(?<![×*·/+-]\s)"
_CHAIN = re.compile(rf"{_NOT_PRODUCT}(?P<lo>{_OPERAND})\s*(?P<op1>{_LE})\s*(?P<name>{_IDENT})\s*"
                    rf"(?P<op2>{_LE})\s*(?P<hi>{_OPERAND})(?!\s*[×*·/])")
_SINGLE = re.compile(rf"{_NOT_PRODUCT}(?<![\w.])(?P<name>{_IDENT})\s*(?P<op>{_LE}|{_GE})\s*"
                     rf"(?P<val>{_OPERAND})(?!\s*[×*·/])")
_NAMES = rf"(?P<names>{_IDENT}(?:\s*,\s*{_IDENT})*(?:,?\s+and\s+{_IDENT})?)"
_MULTIPLE = re.compile(rf"{_NAMES}\s+(?:is|are)\s+(?:a\s+|all\s+)?multiples?\s+of\s+"
                       rf"(?P<val>{_NUM})")
_SIGN = re.compile(rf"{_NAMES}\s+(?:is|are)\s+(?:all\s+|strictly\s+)?"
                   rf"(?P<sign>non-negative|nonnegative|positive|non-positive|negative)\b")
_PERF = re.compile(r"performance\s+is\s+measured\s+with", re.I)
_PERF_PAIR = re.compile(rf"({_IDENT})\s*=\s*({_NUM})")
_SIGN_RULES = {"positive": ("gt", 0), "non-negative": ("min", 0), "nonnegative": ("min", 0),
               "negative": ("lt", 0), "non-positive": ("max", 0)}


def _operand(token: str) -> Any:
    token = token.strip()
    if re.fullmatch(_IDENT, token):
        return token
    return _number(html_mod.prose_number(token))


def _names(text: str) -> List[str]:
    return [n for n in re.split(r"\s*,\s*|,?\s+and\s+", text.strip()) if n]


def parse_constraint_items(items: List[str]) -> Tuple[Rules, Optional[Dict[str, Any]]]:
    """Rules read from the Constraints list, and the performance bullet's ``name = value``
    pairs (None when there is no such bullet)."""
    rules: Rules = {}
    performance: Optional[Dict[str, Any]] = None
    for item in items:
        text = " ".join(item.split())
        if _PERF.search(text):
            tail = text[_PERF.search(text).end():]
            performance = {n: _number(html_mod.prose_number(v)) for n, v in _PERF_PAIR.findall(tail)}
            continue
        for match in _CHAIN.finditer(text):
            rule = rules.setdefault(match.group("name"), {})
            rule["min" if match.group("op1") != "<" else "gt"] = _operand(match.group("lo"))
            rule["max" if match.group("op2") != "<" else "lt"] = _operand(match.group("hi"))
        rest = _CHAIN.sub(" ; ", text)
        for match in _SINGLE.finditer(rest):
            op, value = match.group("op"), _operand(match.group("val"))
            key = {"≤": "max", "<=": "max", "<": "lt", "≥": "min", ">=": "min", ">": "gt"}[op]
            rules.setdefault(match.group("name"), {})[key] = value
        for match in _MULTIPLE.finditer(text):
            for name in _names(match.group("names")):
                rules.setdefault(name, {})["multiple_of"] = _operand(match.group("val"))
        for match in _SIGN.finditer(text):
            key, value = _SIGN_RULES[match.group("sign").lower()]
            for name in _names(match.group("names")):
                rules.setdefault(name, {})[key] = value
    return normalize(rules), performance


def html_constraints(ctx: Context) -> Tuple[Optional[Rules], Optional[Dict[str, Any]]]:
    """(rules, performance pairs) from challenge.html; (None, None) without a Constraints
    section."""
    if ctx.html is None:
        return None, None
    _, found = html_mod.sections(ctx.html)
    section = html_mod.find_section(found, r"constraint")
    if section is None:
        return None, None
    return parse_constraint_items(html_mod.list_items(section.body))


def stated(ctx: Context) -> Optional[Rules]:
    """The rules challenge.html's Constraints list states (None when it states none this
    module reads)."""
    rules, _ = html_constraints(ctx)
    return rules or None


# -- checking a case ----------------------------------------------------------------------------

def _resolve(bound: Any, case: Dict[str, Any]) -> Optional[float]:
    if isinstance(bound, str):
        value = case.get(bound)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return bound


def violations(rules: Rules, case: Dict[str, Any], label: str) -> List[str]:
    out = []
    for name, rule in rules.items():
        if name not in case:
            continue
        value = case[name]
        if isinstance(value, torch.Tensor):
            if value.device.type == "meta" or value.numel() == 0:
                continue
            data = value.detach().to("cpu", torch.float64)
            if torch.isnan(data).any():
                out.append(f"{label}: `{name}` has NaN")
                continue
            low, high = float(data.min()), float(data.max())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            data, low, high = None, value, value
        else:
            continue
        for key, bound in rule.items():
            limit = _resolve(bound, case)
            if limit is None:
                continue
            bad = {"min": low < limit, "max": high > limit, "gt": low <= limit,
                   "lt": high >= limit}.get(key)
            if key == "multiple_of":
                bad = (bool((torch.remainder(data, limit) != 0).any()) if data is not None
                       else value % limit != 0)
            if bad:
                shown = f"{value}" if data is None else f"in [{low:g}, {high:g}]"
                out.append(f"{label}: `{name}` = {shown} breaks {describe_rule(name, rule)}"
                           + (f" ({bound} = {limit})" if isinstance(bound, str) else ""))
                break
    return out


def _performance_case(ctx: Context) -> Optional[Dict[str, Any]]:
    if ctx.cases.performance is not None:
        return ctx.cases.performance
    return ctx.meta.performance if ctx.meta_works else None


def check_constraints(ctx: Context) -> CheckResult:
    rules = stated(ctx)
    if rules is None:
        return stricter(ctx.format, "constraints",
                        "challenge.html states no constraint this validator can read",
                        "list the bounds under <h3>Constraints</h3> as '1 &le; <code>N</code> "
                        "&le; 1,024', '<code>d</code> is a multiple of 8', '<code>x</code> is "
                        "positive' (docs/authoring.md lists the forms)")
    labelled = ctx.cases.labelled(performance=False)
    performance = _performance_case(ctx)
    if performance is not None:
        labelled.append(("performance test", performance))
    bad: List[str] = []
    for label, case in labelled:
        bad += violations(rules, case, label)
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        return stricter(ctx.format, "constraints", "; ".join(bad[:3]) + more,
                        "every generated case must satisfy the stated constraints: fix the case, "
                        "or challenge.html's constraints if they are wrong")
    unknown = [name for name in rules if name not in (ctx.signature or {})]
    count = len(rules) - len(unknown)
    result = passed("constraints", f"all {len(labelled)} cases satisfy the {count} "
                                   f"rule{'s' if count != 1 else ''} of challenge.html's "
                                   f"Constraints list")
    if unknown:
        result.hint = (f"not checked: {', '.join(unknown)} (not parameters of solve; use the "
                       f"parameters' names for a bound to be checked)")
    return result


# -- coverage -----------------------------------------------------------------------------------

def _smallest_allowed(rule: Rule) -> Optional[int]:
    if isinstance(rule.get("min"), int):
        low = rule["min"]
    elif isinstance(rule.get("gt"), int):
        low = rule["gt"] + 1
    else:
        return None
    step = rule.get("multiple_of")
    if isinstance(step, int) and step > 0:
        low = -(-low // step) * step
    return low


def _largest_allowed(rule: Rule) -> Optional[float]:
    if isinstance(rule.get("max"), (int, float)):
        return rule["max"]
    if isinstance(rule.get("lt"), (int, float)):
        return rule["lt"] - 1
    return None


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _non_power_of_two_allowed(rule: Rule, low: int) -> bool:
    step = rule.get("multiple_of") if isinstance(rule.get("multiple_of"), int) else 1
    high = _largest_allowed(rule)
    value = max(low, 1)
    for _ in range(64):
        if high is not None and value > high:
            return False
        if value % step == 0 and not _is_power_of_two(value):
            return True
        value += 1 if value % step else step
    return False


def size_parameters(ctx: Context, rules: Rules) -> Dict[str, Tuple[Rule, int]]:
    """Integer scalars of the signature with a numeric lower bound: name -> (rule, smallest)."""
    out = {}
    for name, (ctype, _) in (ctx.signature or {}).items():
        if is_tensor_type(ctype) or is_object_type(ctype) or name not in rules:
            continue
        low = _smallest_allowed(rules[name])
        if low is not None:
            out[name] = (rules[name], low)
    return out


def check_coverage(ctx: Context) -> CheckResult:
    rules = stated(ctx)
    if rules is None:
        return skipped("coverage", "needs stated constraints (see the constraints check)")
    functional = ctx.cases.functional
    sizes = size_parameters(ctx, rules)
    missing = []
    for name, (rule, low) in sizes.items():
        values = [c.get(name) for c in functional if isinstance(c.get(name), int)]
        if low not in values:
            missing.append(f"no functional case has the smallest {name} ({low})")
        if _non_power_of_two_allowed(rule, low) and all(_is_power_of_two(v) for v in values):
            missing.append(f"every functional case has a power-of-two {name}")
    performance = _performance_case(ctx)
    perf_bytes = ctx.performance_bytes or (case_bytes(performance) if performance else None)
    largest = max((case_bytes(c) for c in functional), default=0)
    if perf_bytes and largest * REALISTIC_FRACTION < perf_bytes:
        missing.append(f"the largest functional case holds {fmt_bytes(largest)}, less than "
                       f"1/{REALISTIC_FRACTION} of the performance case's {fmt_bytes(perf_bytes)}")
    if not sizes:
        missing.append("no size parameter has a numeric lower bound in the constraints, so edge "
                       "sizes cannot be told")
    if missing:
        return stricter(ctx.format, "coverage", "; ".join(missing),
                        "the functional cases should include each size parameter's smallest "
                        "value, sizes that are not powers of two, and a realistic size (at least "
                        f"1/{REALISTIC_FRACTION} of the performance case's bytes)")
    return passed("coverage", f"edge sizes ({', '.join(f'{n}={low}' for n, (_, low) in sizes.items())}), "
                              f"non-powers of two, and a realistic case ({fmt_bytes(largest)})")


# -- full-range inputs --------------------------------------------------------------------------

FULL_RANGE_DTYPES = (torch.int8, torch.uint8)


def allowed_range(dtype: torch.dtype, rule: Optional[Rule]) -> Tuple[int, int]:
    """The lowest and highest value an input of ``dtype`` may hold under ``rule``."""
    info = torch.iinfo(dtype)
    low, high = info.min, info.max
    rule = rule or {}
    if isinstance(rule.get("min"), (int, float)):
        low = max(low, math.ceil(rule["min"]))
    if isinstance(rule.get("gt"), (int, float)):
        low = max(low, math.floor(rule["gt"]) + 1)
    if isinstance(rule.get("max"), (int, float)):
        high = min(high, math.floor(rule["max"]))
    if isinstance(rule.get("lt"), (int, float)):
        high = min(high, math.ceil(rule["lt"]) - 1)
    return low, high


def check_value_range(ctx: Context) -> CheckResult:
    """Each 8-bit integer input (quantized data) takes both its lowest and its highest allowed
    value in some functional case: the type's range, narrowed by the stated constraints. A
    solution that mishandles -128 (a clamp to +-127, a conversion trick that breaks on 0x80)
    must fail somewhere."""
    rules = stated(ctx)
    missing, covered = [], []
    for name, (ctype, direction) in (ctx.signature or {}).items():
        if direction == "out":
            continue
        tensors = [c[name] for c in ctx.cases.functional
                   if isinstance(c.get(name), torch.Tensor) and c[name].numel()
                   and c[name].dtype in FULL_RANGE_DTYPES]
        if not tensors:
            continue
        low, high = allowed_range(tensors[0].dtype, (rules or {}).get(name))
        seen_low = min(int(t.min()) for t in tensors)
        seen_high = max(int(t.max()) for t in tensors)
        dtype = str(tensors[0].dtype).replace("torch.", "")
        if seen_low > low:
            missing.append(f"no functional case has {low} in `{name}` (the lowest value {dtype} "
                           f"and the constraints allow; the cases go down to {seen_low})")
        if seen_high < high:
            missing.append(f"no functional case has {high} in `{name}` (the highest value "
                           f"{dtype} and the constraints allow; the cases go up to {seen_high})")
        covered.append(f"{name} in [{low}, {high}]")
    if not covered:
        return skipped("value-range", "no 8-bit integer input")
    if missing:
        return stricter(ctx.format, "value-range", "; ".join(missing[:4]),
                        "draw 8-bit inputs over their whole allowed range (torch.randint(-128, "
                        "128, ...) for int8), and add a case where the extremes decide the "
                        "answer; if a value is not allowed, say so in the Constraints list")
    return passed("value-range", f"the functional cases reach both ends of {', '.join(covered)}")


# -- challenge.html's list against the declaration and the performance case ---------------------

def check_html_constraints(ctx: Context) -> CheckResult:
    html_rules, perf_pairs = html_constraints(ctx)
    if html_rules is None:
        return failed("html-constraints", "challenge.html has no Constraints section",
                      "add <h3>Constraints</h3> with a <ul> of the constraints and the bullet "
                      "'Performance is measured with <code>n</code> = ...'")
    problems = []
    incomplete = []       # this project's stricter rule: the bullet names every size, only sizes
    performance = _performance_case(ctx)
    if perf_pairs is None:
        problems.append("the Constraints list has no 'Performance is measured with ...' bullet")
    elif performance is not None:
        sizes = {k: v for k, v in performance.items()
                 if isinstance(v, int) and not isinstance(v, bool)}
        for name, value in sizes.items():
            if name not in perf_pairs:
                incomplete.append(f"the performance bullet does not give {name} (= {value:,})")
            elif perf_pairs[name] != value:
                problems.append(f"the performance bullet says {name} = {perf_pairs[name]:,} but "
                                f"generate_performance_test() uses {value:,}")
        for name in perf_pairs:
            if name not in sizes:
                incomplete.append(f"the performance bullet gives {name}, which is not an "
                                  f"integer of the performance case")
    hint = ("make challenge.html's Constraints list and generate_performance_test() agree (write bounds as '1 &le; <code>n</code> &le; "
            "1,024', and give every integer of the performance case in its bullet)")
    if problems:
        return failed("html-constraints", "; ".join((problems + incomplete)[:4]), hint)
    if incomplete:
        return stricter(ctx.format, "html-constraints", "; ".join(incomplete[:4]), hint)
    return passed("html-constraints", "the Constraints list's performance bullet gives the "
                                      "performance case's sizes exactly")
