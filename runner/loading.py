"""Loading a challenge folder: its ``challenge.py`` imported, its ``Challenge`` made, in either
format (this runner's :mod:`runner.challenge`, or LeetGPU's through :mod:`runner.compat`)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import torch

from runner.catalog import ChallengeInfo
from runner.challenge import ChallengeBase
from runner.compat import leetgpu_imports
from runner.compat.core.challenge_base import ChallengeBase as LeetGPUBase
from runner.languages import triton as triton_language


def module_name(path: Path) -> str:
    """A module name for the folder's ``challenge.py``, unique to the folder."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"_challenge_{path.name}_{digest}"


def load_challenge(info: ChallengeInfo, device: torch.device) -> ChallengeBase:
    """Import ``challenge.py`` from the folder and return its ``Challenge`` instance.

    A LeetGPU-format folder (``from core.challenge_base import ChallengeBase``) gets this
    runner's compatible ``core`` package (:mod:`runner.compat`) while it is imported.
    """
    # before anything can import triton (generating a case may): on the CPU, Triton kernels,
    # a solution's or the challenge's own, run under the interpreter
    triton_language.prepare(torch.device(device))
    name = module_name(info.path)
    spec = importlib.util.spec_from_file_location(name, info.path / "challenge.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with leetgpu_imports():
        spec.loader.exec_module(module)
        challenge = module.Challenge()
    challenge.device = torch.device(device)
    return challenge


def is_leetgpu_format(challenge: ChallengeBase) -> bool:
    """True for a challenge written against LeetGPU's ``core.challenge_base``."""
    return isinstance(challenge, LeetGPUBase)
