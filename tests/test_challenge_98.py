"""Challenge 98 (paged INT8 decode attention with grouped-query heads): the reference against an
independent float64 NumPy implementation, the generators (the promised cases, valid tables,
stale data that matters), the shipped solutions and starters, and mistakes the tests catch."""

import math
import shutil

import numpy as np
import pytest
import torch

from helpers import (REPO, assert_compiles_without_a_gpu, assert_python_files_take_the_signature,
                     grade_json)
from runner.grader.plan import compare_output
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.languages import backend

FOLDER = REPO / "challenges/hard/98_paged_int8_decode_attention"
REFERENCE = REPO / "reference/paged_int8_decode_attention"
STARTERS = REPO / "starter_code/paged_int8_decode_attention"


def numpy_attention(case, *, whole_blocks=False, kv_head_of=None) -> np.ndarray:
    """float64 NumPy, token by token through the block table. ``whole_blocks`` and
    ``kv_head_of`` give two wrong variants (stale tail rows read; another head mapping)."""
    q = case["Q"].cpu().numpy().astype(np.float64)
    kc, vc = case["k_cache"].cpu().numpy(), case["v_cache"].cpu().numpy()
    ks = case["k_scale"].cpu().numpy().astype(np.float64)
    vs = case["v_scale"].cpu().numpy().astype(np.float64)
    table, lens = case["block_table"].cpu().numpy(), case["context_lens"].cpu().numpy()
    bs, h_count, kvh = case["block_size"], case["num_heads"], case["num_kv_heads"]
    group = h_count // kvh
    out = np.zeros(q.shape)
    for b, length in enumerate(lens):
        n = -(-int(length) // bs) * bs if whole_blocks else int(length)
        pos = np.arange(n)
        blk, off = table[b, pos // bs], pos % bs
        for h in range(h_count):
            g = kv_head_of(h, group, kvh) if kv_head_of else h // group
            k = kc[blk, off, g].astype(np.float64) * ks[blk, off, g][:, None]
            v = vc[blk, off, g].astype(np.float64) * vs[blk, off, g][:, None]
            logits = k @ q[b, h] / math.sqrt(case["head_dim"])
            w = np.exp(logits - logits.max())
            out[b, h] = (w / w.sum()) @ v
    return out


@pytest.fixture(scope="module")
def challenge():
    return load_challenge(find_challenge("98"), torch.device("cpu"))


@pytest.fixture(scope="module")
def functional(challenge):
    return challenge.generate_functional_test()


@pytest.fixture(scope="module")
def perf(challenge):
    return challenge.generate_performance_test()


def reference(challenge, case):
    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    challenge.reference_impl(**args)
    return args["output"]


def passes(challenge, got, expected, case) -> bool:
    return compare_output(challenge, "output", torch.as_tensor(got, dtype=torch.float32),
                                expected, case).passed


# -- the reference ----------------------------------------------------------------------------

def test_reference_matches_float64_numpy_on_every_case(challenge, functional):
    for name, case in [("example", challenge.generate_example_test())] + \
            [(f"functional {i}", c) for i, c in enumerate(functional)]:
        got = reference(challenge, case).numpy()
        want = numpy_attention(case)
        assert np.isfinite(got).all(), name
        assert np.allclose(got, want, atol=1e-4, rtol=1e-4), (name, np.abs(got - want).max())


def test_mistakes_are_caught_by_the_cases(challenge, functional):
    """Reading a last block whole, mapping query heads to KV heads round-robin, or ignoring
    the block table each fail some functional case; exp() without the max overflows."""
    wrong = {
        "whole last blocks": lambda c: numpy_attention(c, whole_blocks=True),
        "head h -> kv head h % num_kv_heads": lambda c: numpy_attention(
            c, kv_head_of=lambda h, group, kvh: h % kvh),
    }
    for label, variant in wrong.items():
        assert any(not passes(challenge, variant(c), reference(challenge, c), c)
                   for c in functional), label
    # blocks taken in pool order instead of through the table
    contiguous = []
    for c in functional:
        plain = dict(c, block_table=torch.arange(c["block_table"].numel(), dtype=torch.int32)
                     .reshape(c["block_table"].shape) % c["num_blocks"])
        contiguous.append(not passes(challenge, numpy_attention(plain), reference(challenge, c), c))
    assert any(contiguous)
    # int8 read through the symmetric range (-128 as -127) fails the cases built for it, on
    # the tensor-core shape (head_dim 128, blocks of 16) and on an odd one
    clamped = [c for c in functional if c["head_dim"] in (128, 40) and not passes(
        challenge, numpy_attention(dict(c, k_cache=c["k_cache"].clamp(-127, 127),
                                        v_cache=c["v_cache"].clamp(-127, 127))),
        reference(challenge, c), c)]
    assert {(c["head_dim"], c["block_size"]) for c in clamped} >= {(128, 16), (40, 5)}
    # the large-logit case overflows exp() in float32 unless the max is subtracted
    big = functional[7]
    q, k = big["Q"].double(), big["k_cache"].double() * big["k_scale"].double()[..., None]
    assert (torch.einsum("bhd,nskd->bhnsk", q, k) / 8 > 89).any()


# -- generators ---------------------------------------------------------------------------------

def used_blocks(case):
    bs = case["block_size"]
    return [case["block_table"][b, :-(-int(n) // bs)].tolist()
            for b, n in enumerate(case["context_lens"].tolist())]


def test_cases_are_valid_and_cover_the_promised_cases(challenge, functional, perf):
    for case in [challenge.generate_example_test(), *functional, perf]:
        b, h, kvh, d = case["batch"], case["num_heads"], case["num_kv_heads"], case["head_dim"]
        bs, nb, mb = case["block_size"], case["num_blocks"], case["max_blocks_per_seq"]
        assert 1 <= b <= 256 and 1 <= kvh <= h <= 64 and h % kvh == 0
        assert 8 <= d <= 256 and d % 8 == 0 and 1 <= bs <= 256
        lens = case["context_lens"]
        assert lens.dtype == torch.int32 and (lens >= 1).all() and (lens <= 32768).all()
        assert (lens <= mb * bs).all()
        assert case["block_table"].shape == (b, mb) and case["block_table"].dtype == torch.int32
        for blocks in used_blocks(case):
            assert all(0 <= x < nb for x in blocks) and len(set(blocks)) == len(blocks)
        assert (case["k_scale"] > 0).all() and (case["v_scale"] > 0).all()
        assert case["k_cache"].shape == (nb, bs, kvh, d) and case["k_scale"].shape == (nb, bs, kvh)
    lens = [c["context_lens"].tolist() for c in functional]
    assert any(1 in x for x in lens)                                             # length 1
    assert any(n % c["block_size"] for c, x in zip(functional, lens) for n in x)  # partial blocks
    assert any(max(x) >= 1000 * min(x) for x in lens)                             # very uneven
    ratios = {c["num_heads"] // c["num_kv_heads"] for c in functional}
    assert {1, 4, 8} <= ratios
    assert any(c["num_kv_heads"] == 1 and c["num_heads"] > 1 for c in functional)  # MQA
    assert {16, 256} <= {c["block_size"] for c in functional}
    shared = [c for c in functional if len(used_blocks(c)) > 1 and
              set(used_blocks(c)[0]) & set(used_blocks(c)[1])]
    assert shared                                                                # prefix sharing
    assert any(any(x != sorted(x) for x in used_blocks(c)) for c in functional)  # shuffled
    assert any((c["block_table"] == -1).any() for c in functional)               # -1 padding
    assert max(c["num_heads"] for c in functional) == 64
    assert {8, 40, 256} <= {c["head_dim"] for c in functional}
    for name in ("k_cache", "v_cache"):       # the full int8 range, -128 included
        assert min(int(c[name].min()) for c in functional) == -128, name
        assert max(int(c[name].max()) for c in functional) == 127, name
    # stale rows: a last block's unused tail holds data (not zeros) that would change the answer
    assert any(n % c["block_size"] and c["k_cache"].abs().sum() > 0
               for c in functional for n in c["context_lens"].tolist())
    assert (perf["batch"], perf["num_heads"], perf["num_kv_heads"], perf["head_dim"],
            perf["block_size"], perf["max_blocks_per_seq"]) == (64, 32, 8, 128, 16, 512)


def test_generators_are_deterministic_and_the_seed_changes_data_not_sizes(challenge, functional,
                                                                         perf):
    a, b = functional, challenge.generate_functional_test()
    for x, y in zip(a, b):
        for key, value in x.items():
            if key != "output":
                assert (torch.equal(value, y[key]) if isinstance(value, torch.Tensor)
                        else value == y[key]), key
    base = perf
    challenge.seed = 777
    try:
        other = challenge.generate_performance_test()
    finally:
        challenge.seed = 0
    assert torch.equal(base["context_lens"], other["context_lens"])
    assert not torch.equal(base["block_table"], other["block_table"])
    assert not torch.equal(base["Q"], other["Q"])
    assert challenge.bytes_moved(base) == challenge.bytes_moved(other)


def test_example_matches_the_spec(challenge):
    html = (FOLDER / "challenge.html").read_text()
    case = challenge.generate_example_test()
    out = reference(challenge, case)
    for b, rows in enumerate(out.tolist()):
        text = "[" + ", ".join("[" + ", ".join(f"{v:.4f}" for v in r) + "]" for r in rows) + "]"
        assert f"output[{b}] = {text}" in html, text
    for block, rows in enumerate(case["k_cache"].tolist()):
        assert f"k_cache[{block}] = {rows}" in html
    assert "block_table = [[2, 0, -1], [2, 3, -1]]" in html and "context_lens = [3, 4]" in html


def test_cost_model(challenge, perf):
    case = perf
    tokens = int(case["context_lens"].sum())
    blocks = sum(-(-n // 16) for n in case["context_lens"].tolist())
    assert tokens == 233144 and case["num_blocks"] == 15625
    assert challenge.bytes_moved(case) == (tokens * 8 * 2 * 132 + 4 * blocks + 4 * 64
                                           + 2 * 4 * 64 * 32 * 128)
    assert challenge.flops(case) == 4 * tokens * 32 * 128
    html = (FOLDER / "challenge.html").read_text()
    assert "494.6 MB" in html and "233,144 tokens" in html and "15,625" in html


# -- solutions and starters ---------------------------------------------------------------------

@pytest.mark.parametrize("language, solution", [("pytorch", "solution.pytorch.py"),
                                                ("triton", "solution.triton.py")])
def test_references_are_accepted_on_run_and_pass_the_functional_cases(capsys, challenge,
                                                                      functional, language,
                                                                      solution):
    code, result, _ = grade_json(capsys, "98", "--solution", REFERENCE / solution)
    assert code == 0 and result["verdict"] == "accepted", result["message"]
    solve = backend(language).load(REFERENCE / solution, challenge, torch.device("cpu"))
    cases = functional if language == "pytorch" else functional[:-1]   # the interpreter is slow
    for i, case in enumerate(cases):
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        args["output"].fill_(float("nan"))
        solve(args)
        result = compare_output(challenge, "output", args["output"],
                                      reference(challenge, case), case)
        assert result.passed, (i, result.describe(challenge.atol, challenge.rtol))


@pytest.mark.parametrize("starter", ["starter.pytorch.py", "starter.triton.py"])
def test_starters_are_wrong_answers(capsys, starter):
    code, result, _ = grade_json(capsys, "98", "--solution", STARTERS / starter)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "got nan" in result["message"]


def test_reading_stale_rows_is_a_wrong_answer(capsys, tmp_path):
    path = tmp_path / "whole_blocks.pytorch.py"
    path.write_text((REFERENCE / "solution.pytorch.py").read_text().replace(
        "valid = pos[None, :] < lens[b0:b1, None]",
        "valid = pos[None, :] < (-(-lens[b0:b1, None] // block_size) * block_size)"))
    code, result, _ = grade_json(capsys, "98", "--solution", path)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "differ by more than" in result["message"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("path", [REFERENCE / "solution.cu", STARTERS / "starter.cu"])
def test_cuda_files_compile(path, challenge, tmp_path, monkeypatch):
    assert_compiles_without_a_gpu(path, challenge, tmp_path, monkeypatch)


def test_every_starter_and_python_solution_has_the_signature(challenge):
    assert_python_files_take_the_signature(challenge, STARTERS, REFERENCE)


# -- the CUDA references' logic on the CPU ----------------------------------------------------
# nvcc compiles here but nothing runs; to check the CUDA kernels' indexing, chunking and merging
# without a GPU, their source is rebuilt with g++ against a small emulation of the CUDA features
# they use (one std::thread per CUDA thread, one block at a time, barriers for __syncthreads and
# warp shuffles; ex2.approx becomes exp2f). A check of logic, not of the hardware.

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


@pytest.mark.parametrize("defines", [(), ("PG_TC_L2PF 0",)], ids=["default", "plain-loads"])
def test_cuda_reference_logic_on_the_cpu(challenge, functional, tmp_path, defines):
    library = emulate_cuda(REFERENCE / "solution.cu", tmp_path, defines)
    if library is None:
        pytest.skip("needs g++ with C++20 <barrier>")
    # float32 kernel: the example, head_dim 40 with GQA 3 over three chunks (the merge), head_dim
    # 8 and block_size 1 (VEC 8). Tensor-core kernel (head_dim 64/128, block_size % 16 == 0):
    # heads per tile 1 (MHA), 2, 4 (with -1 padding; logits in the hundreds), 8 (GQA 8, and GQA 16
    # as two tiles), block_size 256, v_scale over six decades (the weights' exponent tracking),
    # tiny and huge queries (their power-of-two normalisation).
    extra = [challenge._case(21, [40, 129], 16, 2, 128, 16),
             challenge._case(22, [70, 3], 4, 2, 64, 16),
             challenge._case(23, [33, 97], 16, 1, 64, 16),
             challenge._case(24, [100, 20], 4, 1, 128, 32, v_scale_range=(1e-4, 30.0)),
             challenge._case(25, [50], 8, 2, 64, 16, q_scale=1e-4),
             challenge._case(26, [50], 8, 2, 128, 16, q_scale=1e3),
             challenge._case(27, [300, 17], 4, 4, 128, 256)]
    cases = [challenge.generate_example_test()] + [functional[i] for i in (0, 1, 8, 9)] + extra
    for i, case in enumerate(cases):
        got = call_emulated(library, challenge, case)["output"]
        result = compare_output(challenge, "output", got, reference(challenge, case), case)
        assert result.passed, (i, result.describe(challenge.atol, challenge.rtol))


# -- on a GPU (run by the lead on the device) ----------------------------------------------------

@pytest.mark.gpu
def test_cuda_reference_on_every_functional_case_against_float64(challenge):
    gpu = load_challenge(find_challenge("98"), torch.device("cuda"))
    solve = backend("cuda").load(REFERENCE / "solution.cu", gpu, torch.device("cuda"))
    for i, case in enumerate(gpu.generate_functional_test()):
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        args["output"].fill_(float("nan"))
        solve(args)
        torch.cuda.synchronize()
        want = numpy_attention(case)
        got = args["output"].cpu().numpy()
        assert np.allclose(got, want, atol=1e-3, rtol=1e-3), (i, np.abs(got - want).max())


@pytest.mark.gpu
@pytest.mark.parametrize("starter", ["starter.cu", "starter.triton.py", "starter.pytorch.py",
                                     "starter.cupy.py"])
def test_starters_are_wrong_answers_on_the_gpu(capsys, starter):
    code, result, _ = grade_json(capsys, "98", "--solution", STARTERS / starter, "--device", "cuda")
    assert code == 1 and result["verdict"] == "wrong_answer", (result["message"], result["details"])
