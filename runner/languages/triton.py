"""Triton solutions: ``solve`` receives torch tensors and launches Triton kernels.

Without a GPU the kernels run under Triton's interpreter; ``TRITON_INTERPRET=1`` must be set
before triton is first imported, which :func:`prepare` does.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import EnvironmentNotSupported
from runner.languages.python_module import load_python_solution


def prepare(device) -> None:
    """Choose Triton's interpreter for a CPU grading. It must happen before triton is first
    imported (torch may import it while a challenge generates its cases), because
    triton.language's own functions are built for one mode when triton is imported:
    :func:`runner.loading.load_challenge` calls this first thing."""
    if str(device) == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"


def _imported_for_the_gpu() -> bool:
    """True when triton was imported before TRITON_INTERPRET=1 was set (its standard library,
    ``tl.sum`` and the like, then cannot run under the interpreter)."""
    # lazy: importing triton fixes its mode for the process; prepare() must come first
    from triton.language import standard
    from triton.runtime.jit import JITFunction

    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover - a triton without the interpreter
        return False
    return isinstance(standard.sum, JITFunction) and not isinstance(standard.sum,
                                                                    InterpretedFunction)


def load(path: Path, challenge, device, **settings):
    prepare(device)
    try:
        import triton  # noqa: F401
    except ImportError:
        raise EnvironmentNotSupported("Triton is not installed here; install the extra: "
                                      "pip install -e '.[triton]'")
    if str(device) == "cpu" and _imported_for_the_gpu():
        raise EnvironmentNotSupported(
            "Triton was imported in this process before TRITON_INTERPRET=1 was set, so its "
            "kernels cannot run under the interpreter on the CPU; set TRITON_INTERPRET=1 in the "
            "environment (or grade in the sandbox, which starts a fresh process)")
    return load_python_solution(path, challenge, device)
