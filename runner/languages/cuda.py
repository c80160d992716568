"""CUDA solutions: ``extern "C" void solve(...)`` built by nvcc, called through ctypes.

``solve`` gets device addresses (``tensor.data_ptr()``) and scalars in the order of the
challenge's signature. It runs on the calling thread, in torch's CUDA context (the device's
primary context), and its launches go to the default stream. After each call the error state
of the solution's own CUDA runtime (nvcc links it statically, so torch never sees it) is read
and cleared; a launch error there becomes a runtime error naming the CUDA error.

Without a GPU the file is still built (for Hopper, ``sm_90a``), so compile errors look as they
would on the grading machine; then grading stops with the verdict ``compiled``.

In a grading, the trusted side has built the library already (:mod:`runner.languages.cuda_build`,
nvcc in a jail of its own) and the job names a read-only copy of it (``library_path``): the
grading's own process never runs nvcc and never sees the build cache. Called without one
(tests, tools: trusted callers), ``load`` builds through the same trusted build.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from runner.errors import CompileError, CompiledOnly, EnvironmentNotSupported, UserRuntimeError
from runner.languages import cuda_abi, cuda_build, cuda_harness, elf_symbols

ERROR_TEXT_BYTES = 512

# what usually causes each error, for the runtime error message
HINTS = {
    "cudaErrorInvalidConfiguration":
        "a kernel launch asked for an impossible configuration: at most 1024 threads per block, "
        "grid.y and grid.z at most 65535, no zero-sized grid or block, and no more dynamic "
        "shared memory than allowed (over 48 KB needs cudaFuncSetAttribute)",
    "cudaErrorInvalidValue": "a CUDA call got an invalid argument: for a kernel launch, at most "
                             "1024 threads per block and no zero-sized grid or block (recent "
                             "drivers report those this way); else a bad size or pointer",
    "cudaErrorLaunchOutOfResources": "a kernel needs more registers or shared memory per block "
                                     "than the GPU has: use fewer threads per block or "
                                     "__launch_bounds__",
    "cudaErrorIllegalAddress": "a kernel read or wrote memory outside its buffers: check the "
                               "index arithmetic and the bounds checks",
    "cudaErrorMisalignedAddress": "a kernel made a misaligned access (e.g. a float4 load from an "
                                  "address that is not a multiple of 16 bytes)",
    "cudaErrorNoKernelImageForDevice": "the library has no code for this GPU: do not override the "
                                       "target architecture with --nvcc-flag",
    "cudaErrorInvalidDeviceFunction": "the library has no code for this GPU: do not override the "
                                      "target architecture with --nvcc-flag",
    "cudaErrorMemoryAllocation": "a cudaMalloc in solve ran out of GPU memory",
    "cudaErrorInsufficientDriver": "the GPU driver is older than the CUDA runtime nvcc linked in: "
                                   "use an nvcc no newer than the driver's CUDA version",
}


def hint_for(error_text: str) -> str:
    return HINTS.get(error_text.split(":", 1)[0].strip(), "")


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@dataclass
class Prebuilt:
    """A library the trusted side built, as the job describes it."""

    library: Path
    target: str
    release: str
    log: str = ""


def prebuilt(library_path: Optional[str], build_info: Optional[Dict[str, str]]) -> Optional[Prebuilt]:
    if not library_path:
        return None
    info = build_info or {}
    return Prebuilt(Path(library_path), str(info.get("target", "")), str(info.get("nvcc", "")),
                    str(info.get("log", "")))


def load(path, challenge, device, **settings):
    path = Path(path)
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    built = prebuilt(settings.get("library_path"), settings.get("build_info"))
    if built is None:
        capability = torch.cuda.get_device_capability(device) if on_gpu else None
        fresh = cuda_build.build(path, capability, getattr(challenge, "nvcc_flags", None) or (),
                                 settings.get("extra_flags") or ())
        built = Prebuilt(fresh.library, fresh.target.name, fresh.nvcc.release, fresh.log)
    signature = challenge.get_solve_signature()
    cuda_abi.check_exports(elf_symbols.exported_functions(built.library), path.name, signature)
    if not on_gpu:
        where = ("no NVIDIA GPU is visible here" if not torch.cuda.is_available()
                 else "this grading runs on the CPU (use --device cuda or auto)")
        raise CompiledOnly(f"{path.name} compiled for {built.target} with nvcc "
                           f"{built.release} and exports `solve` with the signature's "
                           f"parameters, but no test ran: its results and speed were NOT "
                           f"checked; running it needs a GPU, and {where}", built.log)
    return CompiledSolution(built.library, signature, _device_index(device), path.name)


class CompiledSolution:
    """The loaded library; calling it with a test case dict runs ``solve`` once."""

    def __init__(self, library: Path, signature, device_index: int, file_name: str):
        self.signature = signature
        self.file_name = file_name
        self.device_index = device_index
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as exc:
            raise CompileError(f"the library built from {file_name} could not be loaded: {exc}")
        self._lib = lib   # keeps the library loaded while this object lives
        self._solve = lib.solve
        self._solve.argtypes = cuda_abi.argtypes(signature)
        self._solve.restype = None
        self._last_error = getattr(lib, cuda_harness.LAST_ERROR)
        self._last_error.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._last_error.restype = ctypes.c_int
        self._set_device = getattr(lib, cuda_harness.SET_DEVICE)
        self._set_device.argtypes = [ctypes.c_int]
        self._set_device.restype = ctypes.c_int
        self._text = ctypes.create_string_buffer(ERROR_TEXT_BYTES)
        if self._set_device(device_index) != 0:
            text = self._read_error() or "unknown error"
            raise EnvironmentNotSupported(
                f"the CUDA runtime built into {file_name} cannot use GPU {device_index}: {text}"
                + (f" ({hint_for(text)})" if hint_for(text) else ""))

    def _read_error(self) -> str:
        self._text.value = b""
        code = self._last_error(self._text, ERROR_TEXT_BYTES)
        if code == 0:
            return ""
        return self._text.value.decode("utf-8", errors="replace") or f"CUDA error {code}"

    def __call__(self, args: dict) -> None:
        self._solve(*cuda_abi.c_arguments(self.signature, args))
        text = self._read_error()
        if text:
            hint = hint_for(text)
            raise UserRuntimeError(
                f"CUDA error in solve ({self.file_name}): {text}" + (f"; {hint}" if hint else ""),
                "Found by cudaGetLastError() in your library's CUDA runtime right after `solve` "
                "returned. Check each launch's grid, block and shared memory sizes; "
                "compute-sanitizer (or CUDA_LAUNCH_BLOCKING=1) shows which launch failed.")
