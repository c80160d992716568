"""Loading a user's Python file and checking its ``solve`` against the challenge signature."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Callable, List

from runner.errors import CompileError, MemoryLimitExceeded, UserRuntimeError


def user_traceback(exc: BaseException, user_file: Path) -> str:
    """The traceback of ``exc`` keeping only frames in the user's file (and the error line)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == user_file.resolve()]
    lines = ["Traceback (your code only):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def import_user_module(path: Path, module_name: str = "user_solution") -> ModuleType:
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
        raise CompileError(f"syntax error in {path.name} line {exc.lineno}: {exc.msg}", detail)
    module = ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except SystemExit as exc:
        raise CompileError(f"{path.name} called sys.exit({exc.code!r}) while loading",
                           user_traceback(exc, path))
    except ImportError as exc:
        raise CompileError(f"{path.name} failed to import: {exc}. Only the standard library, "
                           f"torch, triton, numpy and cupy are available.",
                           user_traceback(exc, path))
    except Exception as exc:  # noqa: BLE001 - anything raised at import is the user's
        raise CompileError(f"{path.name} raised {type(exc).__name__} while loading: {exc}",
                           user_traceback(exc, path))
    return module


def find_solve(module: ModuleType, path: Path, expected: List[str]) -> Callable:
    solve = getattr(module, "solve", None)
    if solve is None or not callable(solve):
        raise CompileError(f"{path.name} defines no function `solve`; define "
                           f"`def solve({', '.join(expected)}):`")
    try:
        params = list(inspect.signature(solve).parameters.values())
    except (TypeError, ValueError):
        return solve
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_varargs = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
    if names != expected and not (has_varargs and not names):
        raise CompileError(
            f"`solve` in {path.name} takes ({', '.join(names)}) but the challenge passes "
            f"({', '.join(expected)}); use exactly these parameter names, in this order")
    return solve


def call_solve(solve: Callable, args: dict, names: List[str], path: Path) -> None:
    try:
        solve(*[args[name] for name in names])
    except SystemExit as exc:
        raise UserRuntimeError(f"`solve` called sys.exit({exc.code!r}); return from solve instead",
                               user_traceback(exc, path))
    except Exception as exc:  # noqa: BLE001 - the user's exception becomes a verdict
        if isinstance(exc, MemoryError) or "out of memory" in str(exc):
            raise MemoryLimitExceeded(f"`solve` ran out of memory: {exc}".strip(),
                                      user_traceback(exc, path))
        raise UserRuntimeError(f"`solve` raised {type(exc).__name__}: {exc}",
                               user_traceback(exc, path))


def load_python_solution(path: Path, challenge) -> Callable[[dict], None]:
    """Import the file, check its ``solve`` and return a caller taking the test case dict."""
    names = list(challenge.get_solve_signature())
    solve = find_solve(import_user_module(path), path, names)
    return lambda args: call_solve(solve, args, names, path)
