"""A CUDA solution built on the trusted side (nvcc in a jail of its own, by
:mod:`runner.languages.cuda_build`), in a thread while the plan is made and the jail starts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import torch

from runner.grader.options import GradeOptions
from runner.languages import cuda_build
from runner.sandbox.parent import SandboxUnavailable


class Background:
    """``fn(*args)`` in a thread of its own; :meth:`result` waits for it and returns or raises
    what it did (a jailed nvcc is bounded by its own time limit)."""

    def __init__(self, fn, *args):
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                        name="grading-build")
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def build_cuda(challenge, solution: Path, options: GradeOptions) -> cuda_build.Built:
    """The solution's library in the trusted cache (SubmissionError: compile_error and the
    like, before any child starts)."""
    device = options.device
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    sandbox = options.limits.sandbox if options.isolate else "auto"
    try:
        return cuda_build.build(solution, capability, getattr(challenge, "nvcc_flags", None) or (),
                                options.nvcc_flags, sandbox=sandbox)
    except cuda_build.BuildUnavailable as exc:
        raise SandboxUnavailable(f"the CUDA build cannot be jailed: {exc}") from None
