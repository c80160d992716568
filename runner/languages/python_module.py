"""Loading a user's Python file and checking its ``solve`` against the challenge signature."""

from __future__ import annotations

import ast
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Callable, List, Optional, Tuple

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
    """The module's ``solve``, checked to accept the challenge's arguments. They are passed
    positionally, in the signature's order (as LeetGPU does), so only their number must fit;
    the parameters' names do not matter (:func:`binding_notes` says how they were bound)."""
    solve = getattr(module, "solve", None)
    if solve is None or not callable(solve):
        raise CompileError(f"{path.name} defines no function `solve`; define "
                           f"`def solve({', '.join(expected)}):`")
    try:
        params = list(inspect.signature(solve).parameters.values())
    except (TypeError, ValueError):   # Python cannot tell (a builtin, say): just call it
        return solve
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    problem = arity_problem(path.name, [p.name for p in positional],
                            sum(1 for p in positional if p.default is p.empty),
                            any(p.kind == p.VAR_POSITIONAL for p in params),
                            [p.name for p in params
                             if p.kind == p.KEYWORD_ONLY and p.default is p.empty], expected)
    if problem:
        raise CompileError(problem)
    return solve


def arity_problem(file_name: str, names: List[str], required: int, varargs: bool,
                  keyword_only: List[str], expected: List[str]) -> Optional[str]:
    """Why a ``solve`` taking these parameters cannot be called with the challenge's arguments,
    by position; None when it can."""
    takes = f"`solve` in {file_name} takes ({', '.join(names)})"
    passes = f"the challenge passes {len(expected)} arguments ({', '.join(expected)}), in this order"
    if keyword_only:
        return (f"{takes} and keyword-only {', '.join(keyword_only)}, but {passes}, by "
                f"position; make every parameter positional")
    if required > len(expected) or (not varargs and len(names) < len(expected)):
        return f"{takes}: {len(names)} parameter(s), but {passes}; give `solve` one parameter for each"
    return None


def static_solve(path: Path, expected: List[str]) -> Tuple[Optional[str], List[str]]:
    """Read the file without running it: (why its module-level ``solve`` cannot take the
    challenge's arguments, or None; notes on how its parameters are bound, by position, where
    their names differ from the signature's)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), str(path))
    except SyntaxError as exc:
        return f"syntax error in {path.name} line {exc.lineno}: {exc.msg}", []
    solves = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
              and n.name == "solve"]
    if not solves:
        return f"{path.name} defines no function `solve`", []
    args = solves[-1].args
    names = [a.arg for a in args.posonlyargs + args.args]
    keyword_only = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    problem = arity_problem(path.name, names, len(names) - len(args.defaults),
                            args.vararg is not None, keyword_only, expected)
    shown = names[:len(expected)]
    if problem or args.vararg is not None or shown == expected:
        return problem, []
    renamed = [f"{theirs} -> {mine}" for mine, theirs in zip(shown, expected) if mine != theirs]
    return None, [f"`solve` in {path.name} takes ({', '.join(shown)}); arguments are bound by "
                  f"position, so it receives {', '.join(renamed)}"]


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


def load_python_solution(path: Path, challenge, device=None) -> Callable[[dict], None]:
    """Import the file, check its ``solve`` and return a caller taking the test case dict.
    On the CPU, CUDA named in the solution runs there (:mod:`runner.languages.cpu_cuda`)."""
    from runner.languages.cpu_cuda import cuda_on_cpu    # torch: only when a solution loads

    device = device if device is not None else getattr(challenge, "device", "cpu")
    names = list(challenge.get_solve_signature())
    with cuda_on_cpu(device):
        solve = find_solve(import_user_module(path), path, names)

    def call(args: dict) -> None:
        with cuda_on_cpu(device):
            call_solve(solve, args, names, path)
    return call
