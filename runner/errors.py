"""Exceptions that end a grading with a verdict, and usage errors that end the CLI with exit 2."""


class UsageError(Exception):
    """The command line is wrong (unknown challenge, missing file, unknown language)."""


class SubmissionError(Exception):
    """Something in the submission itself; becomes the verdict ``verdict`` with ``message``."""

    verdict = "runtime_error"

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.message = message
        self.details = details  # e.g. the user's traceback or the compiler's output


class CompileError(SubmissionError):
    verdict = "compile_error"


class UserRuntimeError(SubmissionError):
    verdict = "runtime_error"


class CompiledOnly(SubmissionError):
    """A CUDA file that compiled but cannot run here (no GPU)."""

    verdict = "compiled"


class EnvironmentNotSupported(SubmissionError):
    """The submission's language cannot run on this machine (e.g. CuPy without a GPU)."""

    verdict = "runtime_error"


class MemoryLimitExceeded(SubmissionError):
    """Host or GPU memory ran out (or the submission passed its memory limit)."""

    verdict = "memory_limit_exceeded"


class TimeLimitExceeded(SubmissionError):
    verdict = "time_limit_exceeded"


class TamperingDetected(SubmissionError):
    """The submission changed the harness (its timer, its report channel...)."""

    verdict = "wrong_answer"
