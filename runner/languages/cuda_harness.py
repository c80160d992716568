"""A small C++ translation unit linked into every CUDA solution's library.

nvcc links the CUDA runtime statically, so the solution's library carries its own copy of the
runtime, with its own error state: torch's ``cudaGetLastError`` never sees a bad launch made by
the solution. These functions, compiled into the same library, read and clear that state.
Change ``HARNESS_VERSION`` whenever the source changes: it is part of the build cache key.
"""

HARNESS_VERSION = "1"
FILE_NAME = "gpu_challenge_harness.cpp"
LAST_ERROR = "gpu_challenge_harness_last_error"
SET_DEVICE = "gpu_challenge_harness_set_device"
SYMBOLS = (LAST_ERROR, SET_DEVICE)

SOURCE = r"""
#include <cuda_runtime_api.h>
#include <cstdio>

// Returns the solution runtime's last error (clearing it) and writes "name: description".
extern "C" int gpu_challenge_harness_last_error(char* text, int size) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess && text != nullptr && size > 0) {
        std::snprintf(text, size, "%s: %s", cudaGetErrorName(err), cudaGetErrorString(err));
    }
    return static_cast<int>(err);
}

// Makes the solution's runtime use the grading device (the primary context torch also uses).
extern "C" int gpu_challenge_harness_set_device(int device) {
    return static_cast<int>(cudaSetDevice(device));
}
"""
