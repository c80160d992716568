"""Grading a submission in an isolated child process (see :func:`grade_isolated`).

This is the entry point every caller that grades untrusted code uses (the CLI, the judge's
workers). ``Limits`` bounds the whole grading; ``options.progress`` receives progress lines
("compiling", "running test k of n", "timing") in the calling process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runner.challenge import ChallengeInfo
from runner.grade import GradeOptions, grade_safely
from runner.report import Result


@dataclass
class Limits:
    timeout_s: float = 300.0                  # wall clock for the whole grading, build included
    gpu_memory_bytes: Optional[int] = None    # None: the device's memory less a reserve
    output_bytes: int = 64 * 1024             # captured stdout/stderr kept in the result


def grade_isolated(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions,
                   limits: Optional[Limits] = None) -> Result:
    """Grade ``solution``; never raises for anything the submission does."""
    # TODO(sandbox): run the submission side in a child process (work in progress).
    return grade_safely(info, solution, language, options)
