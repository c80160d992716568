"""CuPy solutions: ``solve`` receives CuPy arrays that share memory with the torch tensors.

Tensors are handed over through DLPack (``cupy.from_dlpack``: zero copy) and ``solve`` runs
inside ``cupy.cuda.ExternalStream(<torch's current stream>)``, so RawKernel, ElementwiseKernel
and array code all launch on the stream torch times and synchronizes. Integers stay ints.
CuPy is an optional extra and needs a GPU; without either, a submission gets a clear message.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from runner.errors import CompileError, EnvironmentNotSupported, UserRuntimeError
from runner.languages.python_module import find_solve, import_user_module, user_traceback

NEEDS = "CuPy solutions need an NVIDIA GPU and the cupy extra: pip install -e '.[cupy]'"


def import_cupy():
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA library that fails to load
        raise EnvironmentNotSupported(f"{NEEDS} (importing cupy failed here: "
                                      f"{type(exc).__name__}: {exc})")
    return cupy


def load(path: Path, challenge, device, **settings):
    path = Path(path)
    device = torch.device(device)
    if device.type != "cuda":
        where = ("no NVIDIA GPU is visible here" if not torch.cuda.is_available()
                 else "this grading runs on the CPU; use --device cuda or auto")
        raise EnvironmentNotSupported(f"{NEEDS} ({where})")
    cupy = import_cupy()
    names = list(challenge.get_solve_signature())
    solve = find_solve(import_user_module(path), path, names)
    index = device.index if device.index is not None else torch.cuda.current_device()
    compile_exception = _compile_exception_type(cupy)

    streams = {}   # torch stream handle -> CuPy's view of it (made once: it costs ~20 us)
    views = OrderedDict()   # the CuPy view of a tensor (the timed calls reuse their buffers;
    #                         each view costs ~10 us, and it keeps its tensor alive)

    def as_cupy(tensor: torch.Tensor):
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        view = views.get(key)
        if view is None:
            view = views[key] = cupy.from_dlpack(tensor)
            while len(views) > 64:
                views.popitem(last=False)
        else:
            views.move_to_end(key)
        return view

    def solve_call(args: dict) -> None:
        handle = torch.cuda.current_stream(index).cuda_stream
        if handle not in streams:
            streams[handle] = _external_stream(cupy, handle, index)
        with cupy.cuda.Device(index), streams[handle]:
            values = [as_cupy(args[n]) if isinstance(args[n], torch.Tensor) else args[n]
                      for n in names]
            try:
                solve(*values)
            except compile_exception as exc:   # NVRTC rejected a RawKernel/RawModule source
                raise CompileError(f"a CuPy kernel in {path.name} did not compile: "
                                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                                   user_traceback(exc, path) + "\n\n" + str(exc))
            except Exception as exc:  # noqa: BLE001 - the user's exception becomes a verdict
                raise UserRuntimeError(f"`solve` raised {type(exc).__name__}: {exc}",
                                       user_traceback(exc, path))

    return solve_call


def _external_stream(cupy, handle: int, index: int):
    with warnings.catch_warnings():   # CuPy 14 deprecates ExternalStream; its successor is newer
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(handle, index)


def _compile_exception_type(cupy):
    try:
        from cupy.cuda.compiler import CompileException
        return CompileException
    except Exception:  # noqa: BLE001 - older or unusual CuPy builds: treat as a runtime error
        return ()
