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
from typing import Dict, List

import torch

from runner.authoring import examples
from runner.authoring import html as html_mod
from runner.authoring.context import Context
from runner.authoring.results import CheckResult, failed, passed, skipped, stricter
from runner.policy import DESCRIPTION_MIN_CHARS

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
        html_mod.text_of(s.own) for s in found
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


def _compare(name: str, printed: List[examples.Printed], tensor: torch.Tensor,
             atol: float = 0.0, rtol: float = 0.0) -> str:
    """"" when ``printed`` shows ``tensor`` to the digits shown (or, for an output, within the
    challenge's tolerance: an example may give the exact answer the reference approximates),
    else what differs."""
    values = tensor.detach().to("cpu", torch.float64).reshape(-1).tolist()
    if len(printed) != len(values):
        return (f"`{name}` shows {len(printed)} numbers but the tensor has {len(values)} "
                f"elements")
    for k, (shown, actual) in enumerate(zip(printed, values)):
        if (math.isnan(shown.value) and math.isnan(actual)) or shown.value == actual:
            continue                                   # NaN, or the same infinity
        allowed = max(shown.tolerance, atol + rtol * abs(actual))
        if not abs(shown.value - actual) <= allowed:
            return (f"`{name}` element {k} is shown as {shown.value:g} but is {actual:.7g}")
    return ""


def first_example(section: html_mod.Section) -> str:
    """The HTML of the first example: an Examples section may hold one heading per example."""
    _, inner = html_mod.sections(section.body)
    nested = [s for s in inner if re.search(SECTIONS[2][1], s.title, re.I)]
    return nested[0].body if nested else section.body


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
    directions = ctx.directions
    values = examples.example_values(first_example(section))
    named, loose = examples.by_name(values, list(example))
    problems: List[str] = []
    checked: List[str] = []
    pending: Dict[str, str] = {}      # an output whose named values all differ: why
    tolerance = (float(ctx.challenge.atol), float(ctx.challenge.rtol))
    for name, value in example.items():
        direction = directions.get(name, "in")
        shown = examples.runs(named.get(name, []))
        if not shown:
            continue
        if isinstance(value, torch.Tensor):
            if direction == "in":
                # the same name may be used twice (`B = 2` for a batch, then the matrix `B`)
                errors = [_compare(name, numbers, value) for numbers in shown]
                (problems.append(errors[0]) if all(errors) else checked.append(name))
                continue
            # an output may be shown before the call too: one value must be the reference's
            errors = [_compare(name, numbers, after[name], *tolerance) for numbers in shown]
            if all(errors):
                pending[name] = errors[-1] + " (the reference's output)"
            else:
                checked.append(name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            first = shown[0]
            if len(first) != 1 or not abs(first[0].value - value) <= first[0].tolerance:
                problems.append(f"`{name}` is shown as "
                                f"{', '.join(f'{p.value:g}' for p in first)} but is {value}")
            else:
                checked.append(name)
    # values shown without a (known) name: matched by side and value to a tensor not yet seen
    for shown in loose:
        if shown.numbers is None:
            continue
        for name, value in example.items():
            if name in checked or not isinstance(value, torch.Tensor):
                continue
            direction = directions.get(name, "in")
            targets = []
            if direction in ("in", "inout") and shown.side != examples.OUTPUT:
                targets.append((value, (0.0, 0.0)))
            if direction in ("out", "inout") and shown.side != examples.INPUT:
                targets.append((after[name], tolerance))
            if any(not _compare(name, shown.numbers, t, *tol) for t, tol in targets):
                checked.append(name)
                pending.pop(name, None)
                break
    problems += list(pending.values())
    unseen = [n for n, v in example.items() if isinstance(v, torch.Tensor) and n not in checked
              and n not in pending and not any(f"`{n}`" in p for p in problems)]
    hint = ("the first example must show generate_example_test()'s inputs and the reference's "
            "output on them, as `name = [...]` (nested lists, `name[i] = ...` per slice, or a "
            "LaTeX bmatrix, labelled `<code>name</code>:`), rounded no further than the digits "
            "shown")
    if problems:
        return failed("html-example", "; ".join(problems[:3]), hint)
    if unseen:
        return stricter(ctx.format, "html-example",
                        f"the example does not show {', '.join(f'`{n}`' for n in unseen)} in a "
                        f"form this validator reads"
                        + (f" (checked: {', '.join(checked)})" if checked else ""), hint)
    return passed("html-example", f"the example's {', '.join(checked)} match "
                                  f"generate_example_test() and the reference's output")
