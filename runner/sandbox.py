"""Grading untrusted code: the entry point every caller uses (the CLI, the judge's workers).

:func:`grade_isolated` runs the submission side in a sandboxed child process (see
:mod:`runner.isolation` for what is and is not enforced); ``options.progress`` receives
progress lines ("compiling", "running test k of n", "timing") in the calling process.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from runner.challenge import ChallengeInfo
from runner.grade import GradeOptions, grade_safely
from runner.isolation import Limits
from runner.report import Result

__all__ = ["Limits", "grade_isolated"]


def grade_isolated(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions,
                   limits: Optional[Limits] = None) -> Result:
    """Grade ``solution`` in a child process; never raises for anything the submission does."""
    options = replace(options, isolate=True, limits=limits or options.limits)
    return grade_safely(info, solution, language, options)
