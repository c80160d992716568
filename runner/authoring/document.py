"""Checks of ``challenge.html``: the required sections, and the first example's numbers against
``generate_example_test()`` and the reference's output on it.

Required sections (a heading whose text matches, any level; each with content):

=======================  ===================================  ==============================
section                  heading matches                       formats
=======================  ===================================  ==============================
description              text before the first section, or     both
                         a "Task"/"Description" heading
Inputs and outputs       "input"                               this repository's
Implementation           "requirement"                         both
requirements
Example                  "Example" / "Examples" / "Example 1"  both
Checking                 "checking", "tolerance",              this repository's
                         "correctness" or "accuracy"
Constraints              "constraint"                          both
=======================  ===================================  ==============================

The Checking section must give the challenge's atol and rtol values.
"""

from __future__ import annotations

import math
import re
from typing import List

import torch

from runner.authoring import html as html_mod
from runner.authoring.context import Context
from runner.authoring.results import CheckResult, failed, passed, skipped

DESCRIPTION_MIN_CHARS = 40
SECTIONS = [  # (name, heading pattern, formats that require it)
    ("Inputs and outputs", r"input", ("repo",)),
    ("Implementation requirements", r"requirement", ("repo", "leetgpu")),
    ("Example", r"^examples?\b", ("repo", "leetgpu")),
    ("Checking", r"checking|tolerance|correctness|accuracy", ("repo",)),
    ("Constraints", r"constraint", ("repo", "leetgpu")),
]
_DESCRIPTION = r"^(task|description|problem|overview)\b"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def check_html_sections(ctx: Context) -> CheckResult:
    if ctx.html is None:
        return failed("html-sections", "challenge.html is missing",
                      "write challenge.html next to challenge.py (see docs/authoring.md)")
    lead, found = html_mod.sections(ctx.html)
    problems: List[str] = []
    named = [s for s in found if any(re.search(p, s.title, re.I) for _, p, _ in SECTIONS)]
    unnamed_text = " ".join([html_mod.text_of(lead)] + [
        html_mod.text_of(s.body) for s in found
        if s not in named and not re.search(r"performance", s.title, re.I)])
    described = html_mod.find_section(found, _DESCRIPTION)
    if len(unnamed_text.strip()) < DESCRIPTION_MIN_CHARS and not (
            described and html_mod.text_of(described.body)):
        problems.append("no description (a paragraph before the first section)")
    for name, pattern, formats in SECTIONS:
        if ctx.format not in formats:
            continue
        section = html_mod.find_section(found, pattern)
        if section is None:
            problems.append(f"no {name} section")
        elif not html_mod.text_of(section.body):
            problems.append(f"the {name} section is empty")
    checking = html_mod.find_section(found, SECTIONS[3][1])
    if ctx.format == "repo" and checking is not None and ctx.challenge is not None:
        text = html_mod.text_of(checking.body)
        numbers = html_mod.numbers_in(text)
        for tol in ("atol", "rtol"):
            value = float(getattr(ctx.challenge, tol, 0.0))
            if value == 0.0:
                if "exact" not in text.lower() and 0.0 not in numbers:
                    problems.append(f"the Checking section does not give {tol} = 0 (or say the "
                                    f"comparison is exact)")
            elif not any(_close(value, n) for n in numbers):
                problems.append(f"the Checking section does not give {tol} = {value:g}")
    if problems:
        required = [n for n, _, f in SECTIONS if ctx.format in f]
        return failed("html-sections", "; ".join(problems),
                      f"challenge.html needs a description and these headed sections: "
                      f"{', '.join(required)} (docs/authoring.md lists the heading names)")
    return passed("html-sections", "description, " + ", ".join(
        n for n, _, f in SECTIONS if ctx.format in f) + " present")


def _compare(name: str, printed: List[html_mod.Printed], tensor: torch.Tensor) -> str:
    values = tensor.detach().to("cpu", torch.float64).reshape(-1).tolist()
    if len(printed) != len(values):
        return (f"`{name}` shows {len(printed)} numbers but the tensor has {len(values)} "
                f"elements")
    for k, (shown, actual) in enumerate(zip(printed, values)):
        if math.isnan(shown.value) and math.isnan(actual):
            continue
        if not abs(shown.value - actual) <= shown.tolerance:
            return (f"`{name}` element {k} is shown as {shown.value:g} but is {actual:.7g}")
    return ""


def check_html_example(ctx: Context) -> CheckResult:
    if ctx.html is None:
        return failed("html-example", "challenge.html is missing", "write challenge.html")
    _, found = html_mod.sections(ctx.html)
    section = html_mod.find_section(found, SECTIONS[2][1])
    if section is None:
        return failed("html-example", "challenge.html has no Example section",
                      "add an Example section showing generate_example_test()'s values")
    example = ctx.cases.example
    runs = [r for r in ctx.reference_runs if r.label == "example"]
    if example is None or not runs or runs[0].error:
        return skipped("html-example", "needs the example case and the reference's output on it")
    after = runs[0].outputs
    shown = html_mod.example_assignments(section.body)
    directions = ctx.directions
    problems = []
    checked = []
    for name, value in example.items():
        direction = directions.get(name, "in")
        printed = html_mod.first_value(shown.get(name, []))
        if not printed:
            if isinstance(value, torch.Tensor):
                problems.append(f"the example does not show `{name}` (write `{name} = [...]`)")
            continue
        if isinstance(value, torch.Tensor):
            if direction == "in":
                error = _compare(name, printed, value)
            else:
                # an output may be shown before the call too: one of its values must be the
                # reference's result
                errors = [_compare(name, numbers, after[name])
                          for numbers in html_mod.every_value(shown[name])]
                error = "" if not all(errors) else errors[-1] + " (the reference's output)"
            if error:
                problems.append(error)
            else:
                checked.append(name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if len(printed) != 1 or not abs(printed[0].value - value) <= printed[0].tolerance:
                problems.append(f"`{name}` is shown as "
                                f"{', '.join(f'{p.value:g}' for p in printed)} but is {value}")
            else:
                checked.append(name)
    if problems:
        return failed("html-example", "; ".join(problems[:3]),
                      "the first example must show generate_example_test()'s inputs and the "
                      "reference's output on them, as `name = [...]` (nested lists, or "
                      "`name[i] = ...` per slice, or LaTeX bmatrix), rounded no further than "
                      "the digits shown")
    return passed("html-example", f"the example's {', '.join(checked)} match "
                                  f"generate_example_test() and the reference's output")
