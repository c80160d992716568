"""``run_challenge.py CHALLENGE --action validate``: every rule of the challenge format, checked.

Each check prints one line, PASS, FAIL (with a fix), WARN (with a fix) or SKIP (with why); the
exit code is 1 when any check fails. Two levels of rules: LeetGPU's own (the contract, the
spec's example and constraints, starters) fail any folder; this project's stricter ones
(coverage, full-range inputs, a complete performance bullet, a machine-readable example) fail
this repository's folders and only warn on a folder in LeetGPU's format. ``--json`` prints one object instead (see :class:`ValidationReport`). A check
whose prerequisite failed is skipped, e.g. nothing is checked when challenge.py does not load.
The checks are described in docs/authoring.md.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from runner import devices, languages
from runner.authoring import cases, constraints, contract, document, files, numerics
from runner.authoring.context import Context
from runner.authoring.results import (FAIL, PASS, SKIP, WARN, CheckResult, ValidationReport,
                                      skipped)
from runner.catalog import ChallengeInfo, shown

CheckFn = Callable[[Context], Union[CheckResult, List[CheckResult]]]

# (name, function, names of the checks it needs to have passed)
CHECKS: List[Tuple[str, CheckFn, Sequence[str]]] = [
    ("load", contract.check_load, ()),
    ("class", contract.check_class, ("load",)),
    ("signature", contract.check_signature, ("load",)),
    ("generators", contract.check_generators, ("load",)),
    ("types", contract.check_types, ("signature", "generators")),
    ("device", cases.check_device, ("generators",)),
    ("determinism", cases.check_determinism, ("signature", "generators")),
    ("directions", contract.check_directions, ("signature", "generators")),
    ("float64", numerics.check_float64, ("directions",)),
    ("float64-performance", numerics.check_float64_performance, ("directions",)),
    ("constraints", constraints.check_constraints, ("signature", "generators")),
    ("coverage", constraints.check_coverage, ("signature", "generators")),
    ("value-range", constraints.check_value_range, ("signature", "generators")),
    ("performance", numerics.check_performance, ("generators",)),
    ("html-sections", document.check_html_sections, ("load",)),
    ("html-example", document.check_html_example, ("signature", "generators", "directions")),
    ("html-constraints", constraints.check_html_constraints, ("signature", "generators")),
] + [
    (f"starter[{lang}]", (lambda ctx, lang=lang: files.check_starter(ctx, lang)),
     ("signature", "generators")) for lang in languages.LANGUAGES
] + [
    ("starter[other]", files.check_other_starters, ("load",)),
    ("reference", files.check_references, ("signature", "generators")),
]
CHECK_NAMES = [name for name, _, _ in CHECKS]


def _needed(only: Iterable[str]) -> set:
    wanted = set()
    todo = list(only)
    table = {name: deps for name, _, deps in CHECKS}
    while todo:
        name = todo.pop()
        if name not in table:
            raise ValueError(f"unknown check {name!r}; the checks are: {', '.join(CHECK_NAMES)}")
        if name not in wanted:
            wanted.add(name)
            todo += list(table[name])
    return wanted


def _run_one(name: str, fn: CheckFn, ctx: Context) -> List[CheckResult]:
    try:
        result = fn(ctx)
    except Exception as exc:  # noqa: BLE001 - a check must never take the others down
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return [CheckResult(name, FAIL, f"the check could not run: {type(exc).__name__}: {exc}",
                            f"raised at {frame.filename}:{frame.lineno}; if the challenge looks "
                            f"right, this is a bug in the validator")]
    return result if isinstance(result, list) else [result]


def _status(results: List[CheckResult]) -> str:
    """A check's overall status: failed if any line failed, passed if any passed or warned (a
    warning does not block the checks that depend on it)."""
    if any(r.failed for r in results):
        return FAIL
    return PASS if any(r.status in (PASS, WARN) for r in results) else SKIP


def validate(info: ChallengeInfo, device: torch.device, only: Optional[Iterable[str]] = None,
             skip: Iterable[str] = (),
             progress: Callable[[str], None] = lambda message: None) -> ValidationReport:
    """Run the checks on one challenge: ``only`` these (and what they need) when given, and
    never those in ``skip`` (reported as skipped)."""
    ctx = Context(info, device, progress)
    wanted = _needed(only) if only is not None else set(CHECK_NAMES)
    unwanted = set(skip)
    unknown = unwanted - set(CHECK_NAMES)
    if unknown:
        raise ValueError(f"unknown check(s) {sorted(unknown)}; the checks are: "
                         f"{', '.join(CHECK_NAMES)}")
    report = ValidationReport(challenge=info.display, path=shown(info.path),
                              format="repo", device=str(ctx.device))
    status = {}
    for name, fn, deps in CHECKS:
        if name not in wanted:
            continue
        blocked = [d for d in deps if status.get(d) != PASS]
        if name in unwanted:
            results = [skipped(name, "not checked: left out on request")]
        elif blocked:
            results = [skipped(name, f"not checked: needs {', '.join(blocked)} to pass")]
        else:
            progress(f"checking {name}")
            results = _run_one(name, fn, ctx)
        status[name] = _status(results)
        report.checks += results
    if ctx.challenge is not None:
        report.format = ctx.format
    return report


def validate_command(args, info: ChallengeInfo) -> int:

    device = devices.resolve_device(getattr(args, "device", "auto") or "auto")
    report = validate(info, device,
                      progress=lambda message: print(f"... {message}", file=sys.stderr,
                                                     flush=True))
    print(report.to_json() if getattr(args, "json", False) else report.render_text())
    return 0 if report.ok else 1
