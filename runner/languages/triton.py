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
    if str(device) == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"


def load(path: Path, challenge, device, **settings):
    prepare(device)
    try:
        import triton  # noqa: F401
    except ImportError:
        raise EnvironmentNotSupported("Triton is not installed here; install the extra: "
                                      "pip install -e '.[triton]'")
    return load_python_solution(path, challenge)
