"""Loading challenge folders written for LeetGPU's public challenge set, unmodified.

Their ``challenge.py`` does ``from core.challenge_base import ChallengeBase`` (LeetGPU keeps that
module in ``challenges/core/``). :func:`leetgpu_imports` makes this package's own
:mod:`runner.compat.core.challenge_base` answer that import while a challenge is loaded, even
when a checkout's own ``core`` folder is on ``sys.path``: ours adds what this runner needs
(device mapping on machines without a GPU, seeded generators, the declarative input specs).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Dict, Iterator

from runner.compat import core as _core
from runner.compat.core import challenge_base as _challenge_base

_OURS: Dict[str, object] = {"core": _core, "core.challenge_base": _challenge_base}


@contextlib.contextmanager
def leetgpu_imports() -> Iterator[None]:
    """While inside, ``import core.challenge_base`` gives :mod:`runner.compat.core.challenge_base`.

    Any other module registered as ``core`` (some unrelated package) is put back afterwards;
    ours stay registered otherwise, so a challenge that imports from ``core`` lazily (inside a
    method) still finds it.
    """
    saved = {name: sys.modules.get(name) for name in _OURS}
    sys.modules.update(_OURS)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is not None and module is not _OURS[name]:
                sys.modules[name] = module
