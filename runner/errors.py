"""Exceptions that end a grading with a verdict, and usage errors that end the CLI with exit 2."""

from runner.protocol import Verdict


class UsageError(Exception):
    """The command line is wrong (unknown challenge, missing file, unknown language)."""


class SubmissionError(Exception):
    """Something in the submission itself; becomes the verdict ``verdict`` with ``message``."""

    verdict = Verdict.RUNTIME_ERROR.value

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.message = message
        self.details = details  # e.g. the user's traceback or the compiler's output


class CompileError(SubmissionError):
    verdict = Verdict.COMPILE_ERROR.value


class UserRuntimeError(SubmissionError):
    verdict = Verdict.RUNTIME_ERROR.value


class CompiledOnly(SubmissionError):
    """A CUDA file that compiled but cannot run here (no GPU)."""

    verdict = Verdict.COMPILED.value


class EnvironmentNotSupported(SubmissionError):
    """The submission's language cannot run on this machine (e.g. CuPy without a GPU)."""

    verdict = Verdict.RUNTIME_ERROR.value


class MemoryLimitExceeded(SubmissionError):
    """Host or GPU memory ran out (or the submission passed its memory limit)."""

    verdict = Verdict.MEMORY_LIMIT_EXCEEDED.value


