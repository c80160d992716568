"""Checks of the files around a challenge: a starter for every language that loads (or compiles)
and grades as ``wrong_answer``, and every reference solution present graded ``accepted``.

Starters are the folder's own ``starter/`` and reference solutions its own ``reference/`` (see
:mod:`runner.catalog`; LeetGPU's layout has the same ``starter/``). LeetGPU's format has no CuPy
starter, so for such a folder a missing ``starter.cupy.py`` is not a failure, and its starters
for languages this runner does not grade (CuTe, JAX, Mojo) are listed as skipped.

What a machine without a GPU can check: CUDA files are compiled (the grader's ``compiled``
verdict); CuPy files are parsed and their ``solve`` parameters compared with the signature
(CuPy itself needs a GPU); PyTorch and Triton (under its interpreter) files are graded fully.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from runner import languages
from runner.authoring.context import GRADING_SEED, Context
from runner.authoring.results import CheckResult, failed, passed, skipped
from runner.catalog import reference_files, reference_folder, shown, starter_files, starter_folder
from runner.challenge import is_object_type
from runner.errors import CompiledOnly, EnvironmentNotSupported, SubmissionError
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.languages.python_module import static_solve

REQUIRED_STARTERS = {"repo": tuple(languages.LANGUAGES), "leetgpu": ("cuda", "triton", "pytorch")}
# LeetGPU's starters for languages this runner does not grade: suffix -> language
OTHER_STARTERS = {".cute.py": "CuTe DSL", ".jax.py": "JAX", ".mojo": "Mojo"}

LOADED, COMPILED, UNSUPPORTED, BROKEN = "loaded", "compiled", "unsupported", "broken"


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def load_here(ctx: Context, path: Path, language: str) -> Tuple[str, str, str]:
    """Load (import or compile) a trusted file in this process, as the grader would:
    (LOADED | COMPILED | UNSUPPORTED | BROKEN, message, details)."""
    try:
        languages.backend(language).load(path, ctx.challenge, ctx.device)
    except CompiledOnly as exc:
        return COMPILED, exc.message, ""
    except EnvironmentNotSupported as exc:
        return UNSUPPORTED, exc.message, ""
    except SubmissionError as exc:
        return BROKEN, f"{exc.verdict}: {exc.message}", exc.details
    return LOADED, "", ""


def static_problem(ctx: Context, path: Path) -> Optional[str]:
    """For a Python file that cannot run here: a syntax error, or a module-level ``solve``
    missing or unable to take the signature's arguments by position (None when it can)."""
    return static_solve(path, list(ctx.signature or {}))[0]


def grade_file(ctx: Context, path: Path, language: str, action: str):

    # trusted files of the challenge itself: graded in this process, without the sandbox
    options = GradeOptions(action=action, device=ctx.device, seed=GRADING_SEED,
                           time_budget_s=1.0, time_reference=False, isolate=False,
                           progress=lambda message: ctx.progress(f"  {path.name}: {message}"))
    return grade_safely(ctx.info, path, language, options)


def _cannot_run_here(ctx: Context, name: str, path: Path, why: str, what: str) -> CheckResult:
    """A file whose language cannot run on this machine: what could still be checked."""
    if not path.name.endswith(".py"):
        return skipped(name, f"{shown(path)} not checked: {why}")
    problem = static_problem(ctx, path)
    if problem:
        return failed(name, problem, "give the file a module-level `def solve(...)` with one "
                                     "parameter for each of the signature's, in its order")
    if ctx.device.type == "cpu" and what == "starter":
        # a starter is only meant to load: parsing it is what a machine without a GPU can do
        return passed(name, f"{shown(path)} parses and its solve() takes the signature's "
                            f"parameters; not run: {why}")
    return skipped(name, f"{shown(path)} parses; not graded: {why}")


def check_starter(ctx: Context, language: str) -> CheckResult:
    name = f"starter[{language}]"
    path = starter_files(ctx.info).get(language)
    suffix = languages.suffix(language)
    if path is None:
        places = shown(starter_folder(ctx.info) / f"starter{suffix}")
        objects = [n for n, (t, _) in (ctx.signature or {}).items() if is_object_type(t)]
        if objects and language != "pytorch":
            return skipped(name, f"none ({places}); optional: `solve` takes "
                                 f"{', '.join(objects)} as a Python object, which only a "
                                 f"PyTorch solution is required to handle")
        if language not in REQUIRED_STARTERS[ctx.format]:
            return skipped(name, f"none ({places}); optional in LeetGPU's format")
        return failed(name, f"missing: no {places}",
                      f"write starter{suffix}: an empty `solve` with the signature's parameters "
                      f"that loads (or compiles) but does not solve the challenge")
    state, message, details = load_here(ctx, path, language)
    if state == BROKEN:
        return failed(name, f"{shown(path)} does not load: {message}",
                      "a starter must load (or compile) as it is" +
                      (f"\n{_first_line(details)}" if details else ""))
    if state == COMPILED:
        return passed(name, f"{shown(path)} compiles; the 'compiled' verdict is all a machine "
                            f"without a GPU can give")
    if state == UNSUPPORTED:
        return _cannot_run_here(ctx, name, path, message, "starter")
    result = grade_file(ctx, path, language, "run")
    verdict = result.verdict
    if verdict == "wrong_answer":
        return passed(name, f"{shown(path)} loads, runs and grades as wrong_answer")
    if verdict == "accepted":
        return failed(name, f"{shown(path)} solves the example",
                      "a starter must not solve the challenge: leave `solve` empty")
    return failed(name, f"{shown(path)} grades as {verdict}: {_first_line(result.message)}",
                  "a starter must run without error; it should only fail to produce the right "
                  "answer" + (f"\n{_first_line(result.details)}" if result.details else ""))


def check_other_starters(ctx: Context) -> List[CheckResult]:
    """LeetGPU's starters for languages this runner does not grade, listed as skipped."""
    results = []
    for suffix, language in OTHER_STARTERS.items():
        path = starter_folder(ctx.info) / f"starter{suffix}"
        if path.is_file():
            results.append(skipped(f"starter[{language}]",
                                   f"{shown(path)}: {language} is not graded by this runner"))
    return results


def check_references(ctx: Context) -> List[CheckResult]:
    found = reference_files(ctx.info)
    if not found:
        return [skipped("reference", f"no reference solutions (looked in "
                                     f"{shown(reference_folder(ctx.info))})")]
    return [_check_reference(ctx, language, path) for language, path in found.items()]


def _check_reference(ctx: Context, language: str, path: Path) -> CheckResult:
    name = f"reference[{language}]"
    state, message, details = load_here(ctx, path, language)
    if state == BROKEN:
        return failed(name, f"{shown(path)} does not load: {message}",
                      "a reference solution must load (or compile)" +
                      (f"\n{_first_line(details)}" if details else ""))
    if state == COMPILED:
        return skipped(name, f"{shown(path)} compiles; being accepted can only be checked on a GPU")
    if state == UNSUPPORTED:
        return _cannot_run_here(ctx, name, path, message, "reference")
    result = grade_file(ctx, path, language, "submit")
    if result.verdict == "accepted":
        return passed(name, f"{shown(path)} accepted: {result.message}")
    return failed(name, f"{shown(path)} grades as {result.verdict}: "
                        f"{_first_line(result.message)}",
                  "a reference solution must be accepted on every test" +
                  (f"\n{_first_line(result.details)}" if result.details else ""))
