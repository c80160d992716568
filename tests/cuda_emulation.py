"""The CUDA references' logic on the CPU: nvcc compiles on a machine without a GPU but nothing
runs; to check a CUDA kernel's indexing, chunking and merging there, its source is rebuilt with
g++ against a small emulation of the CUDA features our references use (one std::thread per CUDA
thread, one block at a time, barriers for __syncthreads and warp shuffles; ex2.approx becomes
exp2f, mma.sync a warp-collective with the PTX fragment layouts). A check of logic, not of the
hardware. Used by the challenges' tests (97's and 98's)."""

import shutil

import torch

EMULATION_HEADER = r"""
// A tiny CPU emulation of the CUDA features the reference kernels use (one block at a time,
// one std::thread per CUDA thread, barriers for __syncthreads and warp shuffles).
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>
#include <thread>
#include <barrier>
#include <vector>
#include <functional>
#include <algorithm>
#include <memory>
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct uint4 { unsigned int x, y, z, w; };
struct uint2 { unsigned int x, y; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
struct half { uint16_t bits; };
struct __half2 { uint16_t a, b; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
struct Warp { std::barrier<> bar{32}; float f[32]; unsigned u[32]; };
inline std::barrier<>* g_block_bar = nullptr;
inline std::vector<std::unique_ptr<Warp>> g_warps;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static
#define cudaSuccess 0
typedef int cudaError_t;
enum { cudaDevAttrMultiProcessorCount };
inline int cudaGetDevice(int* d) { *d = 0; return 0; }
inline int cudaDeviceGetAttribute(int* v, int, int) { *v = 132; return 0; }
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int off, int width = 32) {
    unsigned tid = threadIdx.x; Warp& w = *g_warps[tid / 32]; unsigned lane = tid % 32;
    w.f[lane] = v; w.bar.arrive_and_wait();
    unsigned src = lane ^ off; if ((src / width) != (lane / width)) src = lane;
    float r = w.f[src]; w.bar.arrive_and_wait(); return r;
}
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
inline unsigned int __byte_perm(unsigned x, unsigned y, unsigned s) {
    unsigned char bytes[8]; memcpy(bytes, &x, 4); memcpy(bytes + 4, &y, 4);
    unsigned r = 0;
    for (int n = 0; n < 4; ++n) r |= unsigned(bytes[(s >> (4 * n)) & 7]) << (8 * n);
    return r;
}
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
inline void emu_launch(dim3 grid, dim3 block, std::function<void()> fn) {
    unsigned nt = block.x;
    for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
        std::barrier<> bar(nt); g_block_bar = &bar;
        g_warps.clear(); for (unsigned w = 0; w < (nt + 31) / 32; ++w) g_warps.emplace_back(new Warp());
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < nt; ++t) ts.emplace_back([&, t, x, y, z] { threadIdx = dim3(t); blockIdx = dim3(x, y, z); fn(); });
        for (auto& th : ts) th.join();
    }
}
inline dim3 emu_dim(int n) { return dim3(n); }
inline dim3 emu_dim(dim3 d) { return d; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline float half_bits_to_float(uint16_t h) {
    unsigned sign = (h >> 15) & 1, exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0) v = std::ldexp((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = std::ldexp((float)(man | 1024), (int)exp - 25);
    return sign ? -v : v;
}
inline float2 __half22float2(__half2 h) { return {half_bits_to_float(h.a), half_bits_to_float(h.b)}; }
inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
// fp16 (round to nearest even, as the GPU's cvt.rn), the f16x2 subtract, and mma.sync
// m16n8k16 (f16 in, f32 accumulate) as a warp-collective with the PTX fragment layouts
struct __half { uint16_t bits; };
inline uint16_t float_to_half_bits(float f) { _Float16 h = (_Float16)f; uint16_t b; memcpy(&b, &h, 2); return b; }
inline __half __float2half_rn(float f) { return {float_to_half_bits(f)}; }
inline float __half2float(__half h) { return half_bits_to_float(h.bits); }
inline __half2 __floats2half2_rn(float lo, float hi) { return {float_to_half_bits(lo), float_to_half_bits(hi)}; }
inline float half_lo(unsigned u) { return half_bits_to_float(uint16_t(u & 0xffff)); }
inline float half_hi(unsigned u) { return half_bits_to_float(uint16_t(u >> 16)); }
inline unsigned emu_hsub2(unsigned a, unsigned b) {
    return unsigned(float_to_half_bits(half_lo(a) - half_lo(b))) |
           (unsigned(float_to_half_bits(half_hi(a) - half_hi(b))) << 16);
}
inline int __any_sync(unsigned, int pred) {
    unsigned tid = threadIdx.x; Warp& w = *g_warps[tid / 32]; unsigned lane = tid % 32;
    w.u[lane] = pred != 0; w.bar.arrive_and_wait();
    int any = 0; for (int i = 0; i < 32; ++i) any |= w.u[i]; w.bar.arrive_and_wait(); return any;
}
inline int atomicAdd(int* p, int v) { int old = *p; *p += v; return old; }  // blocks run one at a time
inline void __threadfence() {}
struct MmaLane { unsigned a[4], b[2]; };
inline MmaLane g_mma[64][32];
inline void emu_mma(float& d0, float& d1, float& d2, float& d3, unsigned a0, unsigned a1,
                    unsigned a2, unsigned a3, unsigned b0, unsigned b1) {
    unsigned tid = threadIdx.x; Warp& w = *g_warps[tid / 32]; unsigned lane = tid % 32;
    MmaLane* lanes = g_mma[tid / 32];
    lanes[lane] = {{a0, a1, a2, a3}, {b0, b1}};
    w.bar.arrive_and_wait();
    auto A = [&](int r, int k) {   // regs: {row g, k 2t..}, {row g+8, ..}, {row g, k 2t+8..}, {row g+8, ..}
        unsigned u = lanes[(r % 8) * 4 + (k % 8) / 2].a[(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
        return k % 2 ? half_hi(u) : half_lo(u);
    };
    auto B = [&](int k, int n) {   // regs: {k 2t.., n g}, {k 2t+8.., n g}
        unsigned u = lanes[n * 4 + (k % 8) / 2].b[k >= 8 ? 1 : 0];
        return k % 2 ? half_hi(u) : half_lo(u);
    };
    int g = lane / 4, t = lane % 4;
    float* d[4] = {&d0, &d1, &d2, &d3};
    float out[4];
    for (int i = 0; i < 4; ++i) {
        int r = g + (i >= 2 ? 8 : 0), n = 2 * t + (i % 2);
        float acc = *d[i];
        for (int k = 0; k < 16; ++k) acc += A(r, k) * B(k, n);
        out[i] = acc;
    }
    w.bar.arrive_and_wait();
    for (int i = 0; i < 4; ++i) *d[i] = out[i];
}
"""


def emulate_cuda(source, workdir, defines=()):
    """Build ``source`` (a .cu file) for the CPU, with ``#define``s prepended; returns a ctypes
    library, or None when no C++20 compiler is available."""
    import ctypes
    import re
    import subprocess

    compiler = shutil.which("g++")
    if compiler is None:
        return None
    text = "".join(f"#define {d}\n" for d in defines) + source.read_text()
    text = text.replace("#include <cuda_runtime.h>", '#include "cuda_emu.h"')
    text = text.replace("#include <cuda_fp16.h>", '#include "cuda_emu.h"')
    text = re.sub(r'asm\("ex2\.approx\.ftz\.f32 %0, %1;" : "=f"\(y\) : "f"\(x\)\);',
                  "y = exp2f(x);", text)
    text = re.sub(r'asm\("sub\.rn\.f16x2 %0, %0, %1;" : "\+r"\((\w+)\) : "r"\((\w+)\)\);',
                  r"\1 = emu_hsub2(\1, \2);", text)
    operand = r'"[+r]f?"\(([^()]*)\)'
    text = re.sub(r'asm\("mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32 ".*?:\s*'
                  + r",\s*".join([operand] * 4) + r"\s*:\s*" + r",\s*".join([operand] * 6) + r"\);",
                  lambda m: "emu_mma(" + ", ".join(m.groups()) + ");", text, flags=re.S)
    text = re.sub(r'asm\("ld\.global\.nc\.L2::256B\.v4\.u32 [^"]*"[^;]*"l"\((\w+)\)\);',
                  r"v = *reinterpret_cast<const uint4*>(\1);", text)
    assert "asm(" not in text and "asm volatile(" not in text, "inline PTX the emulation does not know"

    def launch(match):
        grid, block = match.group(2).rsplit(",", 1)
        return (f"emu_launch(emu_dim({grid}), emu_dim({block}), "
                f"[=]() {{ {match.group(1)}({match.group(3)}); }});")

    text = re.sub(r"([\w:]+(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\);", launch, text, flags=re.S)
    (workdir / "cuda_emu.h").write_text(EMULATION_HEADER)
    (workdir / "emulated.cpp").write_text(text)
    built = subprocess.run([compiler, "-std=c++20", "-O1", "-shared", "-fPIC", "-o",
                            str(workdir / "emulated.so"), str(workdir / "emulated.cpp"),
                            "-lpthread"], capture_output=True, text=True, timeout=300)
    if built.returncode != 0:
        if "barrier" in built.stderr or "_Float16" in built.stderr:
            return None          # a compiler without C++20's <barrier> or _Float16
        raise AssertionError(built.stderr[-3000:])
    return ctypes.CDLL(str(workdir / "emulated.so"))


def call_emulated(library, challenge, case):
    """Run the emulated ``solve`` on copies of ``case``'s tensors; returns the copies."""
    import ctypes

    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    for name, (_, direction) in challenge.get_solve_signature().items():
        if direction == "out":
            args[name].fill_(float("nan"))
    library.solve(*[ctypes.c_void_p(args[n].data_ptr()) if isinstance(args[n], torch.Tensor)
                    else ctypes.c_int(args[n]) for n in challenge.get_solve_signature()])
    return args
