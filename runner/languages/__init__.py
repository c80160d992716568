"""One module per language. Each exposes ``load(path, challenge, device, **settings) -> solve_call``
(settings: ``extra_flags``, extra compiler flags, used by CUDA).

``solve_call(args)`` takes the test case dict (tensors on the grading device and ints) and
runs the user's ``solve`` on it, writing outputs in place.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, List

from runner.errors import UsageError
from runner.languages.python_module import static_solve

# name -> (module, file suffix); the order matters for detection: longest suffix first
LANGUAGES: Dict[str, str] = {
    "cuda": ".cu",
    "triton": ".triton.py",
    "cupy": ".cupy.py",
    "pytorch": ".pytorch.py",
}
ALIASES = {"torch": "pytorch", "cu": "cuda", "py": "pytorch"}


def normalize(language: str) -> str:
    name = ALIASES.get(language.lower(), language.lower())
    if name not in LANGUAGES:
        raise UsageError(f"unknown language {language!r}; choose one of: {', '.join(LANGUAGES)}")
    return name


def detect(path: Path) -> str:
    """The language a file name implies (``x.cu``, ``x.triton.py``, ``x.cupy.py``, ``x.pytorch.py``)."""
    name = path.name
    for language, suffix in sorted(LANGUAGES.items(), key=lambda kv: -len(kv[1])):
        if name.endswith(suffix):
            return language
    raise UsageError(f"cannot tell the language of {name!r} from its name; name it "
                     f"*.cu, *.triton.py, *.cupy.py or *.pytorch.py, or pass --language")


def backend(language: str):
    return importlib.import_module(f"runner.languages.{normalize(language)}")


def suffix(language: str) -> str:
    return LANGUAGES[normalize(language)]


def binding_notes(path: Path, language: str, challenge) -> List[str]:
    """For a Python solution: how its ``solve``'s parameters receive the challenge's arguments,
    where their names differ (read from the source, never run: the grader's side calls this)."""
    if normalize(language) == "cuda" or not Path(path).is_file():
        return []

    return static_solve(Path(path), list(challenge.get_solve_signature()))[1]
