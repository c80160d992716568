"""The C interface of a CUDA solution: ``extern "C" void solve(...)`` as the challenge's
signature describes it, its ctypes argument types, and checking that a library exports it."""

from __future__ import annotations

import ctypes
import difflib
import re
from typing import Any, Dict, List, Optional, Sequence

from runner.challenge import Signature, is_pointer
from runner.errors import CompileError
from runner.languages import cuda_harness

SOLVE = "solve"


def argtypes(signature: Signature) -> List[Any]:
    """ctypes argument types of ``solve``: ``c_void_p`` for every pointer (a tensor's
    ``data_ptr()``), the signature's own type for every scalar."""
    return [ctypes.c_void_p if is_pointer(ctype) else ctype for ctype, _ in signature.values()]


def c_arguments(signature: Signature, args: Dict[str, Any]) -> List[Any]:
    """The values to pass for one call: device addresses for tensors, scalars as they are."""
    values = []
    for name, (ctype, _) in signature.items():
        value = args[name]
        if is_pointer(ctype):
            if not hasattr(value, "data_ptr"):
                raise TypeError(f"argument {name!r} should be a tensor for a pointer parameter, "
                                f"got {type(value).__name__}")
            values.append(value.data_ptr())
        else:
            values.append(value)
    return values


def _c_type_name(ctype: Any) -> str:
    if ctype in (ctypes.c_float, ctypes.c_double, ctypes.c_bool, ctypes.c_char):
        return {ctypes.c_float: "float", ctypes.c_double: "double", ctypes.c_bool: "bool",
                ctypes.c_char: "char"}[ctype]
    if ctype is ctypes.c_int:
        return "int"
    if isinstance(ctype, type) and issubclass(ctype, ctypes._SimpleCData) and ctype._type_ in "bBhHiIlLqQ":
        signed = ctype._type_.islower()
        return f"{'' if signed else 'u'}int{8 * ctypes.sizeof(ctype)}_t"
    return getattr(ctype, "__name__", str(ctype))


def c_declaration(signature: Signature) -> str:
    """``extern "C" void solve(const float* Q, ..., int head_dim)`` for the signature."""
    params = []
    for name, (ctype, direction) in signature.items():
        if is_pointer(ctype):
            const = "const " if direction == "in" else ""
            params.append(f"{const}{_c_type_name(ctype._type_)}* {name}")
        else:
            params.append(f"{_c_type_name(ctype)} {name}")
    return f'extern "C" void solve({", ".join(params)})'


def plain_name(symbol: str) -> str:
    """The function name inside a C++ mangled symbol (``_Z5solvePKf`` -> ``solve``,
    ``_ZN2ns5solveEv`` -> ``solve``); other symbols unchanged."""
    if not symbol.startswith("_Z"):
        return symbol
    pos, nested = (3, True) if symbol.startswith("_ZN") else (2, False)
    last = symbol
    while pos < len(symbol):
        while nested and pos < len(symbol) and symbol[pos] in "KVrLR":   # cv/ref qualifiers
            pos += 1
        match = re.match(r"\d+", symbol[pos:])
        if not match:
            break
        length = int(match.group())
        start = pos + match.end()
        last = symbol[start:start + length]
        pos = start + length
        if not nested or symbol[pos:pos + 1] == "E":
            break
    return last


def check_exports(exported: Optional[Sequence[str]], file_name: str, signature: Signature) -> None:
    """CompileError unless ``exported`` (a library's exported functions; None: unknown, skip)
    includes a C-linkage ``solve``, saying what is wrong and how to fix it."""
    if exported is None or SOLVE in exported:
        return
    declaration = c_declaration(signature)
    own = [s for s in exported if s not in cuda_harness.SYMBOLS]
    mangled = [s for s in own if s.startswith("_Z") and plain_name(s) == SOLVE]
    if mangled:
        raise CompileError(
            f"`solve` in {file_name} has C++ linkage (it is exported as the mangled name "
            f"`{mangled[0]}`), so the harness cannot find it; declare it with C linkage: "
            f"{declaration}")
    by_plain = {plain_name(s): s for s in own}
    close = difflib.get_close_matches(SOLVE, list(by_plain), n=3, cutoff=0.6)
    close += [n for n in by_plain if n.lower() == SOLVE and n not in close]
    if close:
        names = ", ".join(f"`{n}`" for n in close)
        cpp = " (and give it C linkage)" if by_plain[close[0]].startswith("_Z") else ""
        raise CompileError(
            f"{file_name} exports no function `solve`; did you mean {names}? Rename it{cpp}: "
            f"{declaration}")
    raise CompileError(
        f"{file_name} defines no exported function `solve`; the harness calls "
        f"{declaration} (with C linkage, not static or inline)")
