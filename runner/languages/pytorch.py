"""PyTorch solutions: ``solve`` receives torch tensors on the grading device."""

from __future__ import annotations

from pathlib import Path

from runner.languages.python_module import load_python_solution


def load(path: Path, challenge, device, **settings):
    return load_python_solution(path, challenge, device)
