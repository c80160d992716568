"""INT8 KV-cache decode attention (challenge 96) as a CuPy RawModule.

The kernel is the one in solution.cu (the text between the BEGIN/END KERNELS markers, kept
identical by tests/test_reference_solutions.py): flash-decoding over (split, head) blocks,
16-byte int8 loads, byte-permute int8->float conversion, scales factored out of the dot
products, and the last block of each head merging the splits by log-sum-exp, all in one
launch. This file repeats solution.cu's host logic (which template instance, how many splits)
and launches on CuPy's current stream, which the harness points at torch's stream.
"""

import math

import cupy
import numpy as np

_KERNELS = r"""
// ---- BEGIN KERNELS ----
#ifndef KV_NT
#define KV_NT 128        // threads per block
#endif
#ifndef KV_T
#define KV_T 4           // token rows per lane per iteration (loads in flight: 2 * KV_T)
#endif
#ifndef KV_MINB
#define KV_MINB 4        // blocks per SM the register budget is sized for (__launch_bounds__)
#endif
#ifndef KV_PREFETCH
#define KV_PREFETCH 1    // issue the next iteration's loads before this one's math
#endif
#ifndef KV_LOAD
#define KV_LOAD 0        // 0: ld.global.nc; 1: ...L1::no_allocate.L2::256B; 2: ld.global.cs
#endif
#ifndef KV_INTERLEAVE
#define KV_INTERLEAVE 0  // 1: a head's splits take turns over its tiles (split s reads tiles
#endif                   // s, s + splits, ...), so at any moment they read one window of it

#define KV_MAX_HEADS 64
#define KV_MAX_SPLITS 512                   // per head
#define KV_WS_FLOATS (1 << 20)              // partial accumulators: heads * splits * head_dim
#define KV_WS_PARTIALS 8192                 // (max, sum) pairs: heads * splits

__device__ float kv_ws_acc[KV_WS_FLOATS];
__device__ float2 kv_ws_ml[KV_WS_PARTIALS];
__device__ unsigned int kv_ws_count[KV_MAX_HEADS];   // zero at load; the last block re-zeroes

__device__ __forceinline__ float kv_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// biased = four int8 values XOR 0x80808080 (so each byte is value + 128, unsigned);
// byte i placed under the exponent of 2^23 gives 2^23 + value + 128 exactly.
template <int I>
__device__ __forceinline__ float kv_byte(unsigned int biased) {
    return __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7540u | I)) - 8388736.0f;
}

template <int VEC>
__device__ __forceinline__ void kv_load(unsigned int (&w)[VEC / 4], const signed char* p) {
    if constexpr (VEC == 16) {
#if KV_LOAD == 1
        asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
            : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3]) : "l"(p));
#elif KV_LOAD == 2
        uint4 v = __ldcs(reinterpret_cast<const uint4*>(p));
        w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
#else
        uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
        w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
#endif
    } else {
        uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
        w[0] = v.x; w[1] = v.y;
    }
}

template <int VEC, int T>
struct KvStage {
    unsigned int k[T][VEC / 4];
    unsigned int v[T][VEC / 4];
    float ks[T];
    float vs[T];
};

// Load the T rows (base + j * ROWS + r) of this lane; rows past t1 read as zero.
template <int VEC, int T, int ROWS>
__device__ __forceinline__ void kv_load_stage(KvStage<VEC, T>& st, const signed char* kp,
                                              const signed char* vp, const float* ksp,
                                              const float* vsp, int base, int r, int t1,
                                              int D, bool active) {
#pragma unroll
    for (int j = 0; j < T; ++j) {
        const int t = base + j * ROWS + r;
        const bool in = t < t1;
        if (in && active) {
            kv_load<VEC>(st.k[j], kp + (long long)t * D);
            kv_load<VEC>(st.v[j], vp + (long long)t * D);
        } else {
#pragma unroll
            for (int w = 0; w < VEC / 4; ++w) { st.k[j][w] = 0u; st.v[j][w] = 0u; }
        }
        st.ks[j] = in ? __ldg(ksp + t) : 0.0f;
        st.vs[j] = in ? __ldg(vsp + t) : 0.0f;
    }
}


// Online softmax over the T rows this lane holds: scores, running max and sum, accumulator.
template <int VEC, int G, int T, int ROWS>
__device__ __forceinline__ void kv_consume(const KvStage<VEC, T>& cur, const float (&q)[VEC],
                                           float& m, float& l, float (&acc)[VEC], int base,
                                           int r, int t1, float qk_scale) {
    constexpr int W = VEC / 4;
    float s[T];
    float smax = m;
#pragma unroll
    for (int j = 0; j < T; ++j) {
        float dot = 0.0f;
#pragma unroll
        for (int w = 0; w < W; ++w) {
            const unsigned int x = cur.k[j][w] ^ 0x80808080u;
            dot = fmaf(q[4 * w + 0], kv_byte<0>(x), dot);
            dot = fmaf(q[4 * w + 1], kv_byte<1>(x), dot);
            dot = fmaf(q[4 * w + 2], kv_byte<2>(x), dot);
            dot = fmaf(q[4 * w + 3], kv_byte<3>(x), dot);
        }
#pragma unroll
        for (int off = G / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const bool in = base + j * ROWS + r < t1;
        s[j] = in ? dot * (cur.ks[j] * qk_scale) : -__int_as_float(0x7f800000);
        smax = fmaxf(smax, s[j]);
    }
    const float alpha = kv_exp2(m - smax);
    m = smax;
    l *= alpha;
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] *= alpha;
#pragma unroll
    for (int j = 0; j < T; ++j) {
        const float p = kv_exp2(s[j] - m);
        l += p;
        const float wgt = p * cur.vs[j];
#pragma unroll
        for (int w = 0; w < W; ++w) {
            const unsigned int x = cur.v[j][w] ^ 0x80808080u;
            acc[4 * w + 0] = fmaf(wgt, kv_byte<0>(x), acc[4 * w + 0]);
            acc[4 * w + 1] = fmaf(wgt, kv_byte<1>(x), acc[4 * w + 1]);
            acc[4 * w + 2] = fmaf(wgt, kv_byte<2>(x), acc[4 * w + 2]);
            acc[4 * w + 3] = fmaf(wgt, kv_byte<3>(x), acc[4 * w + 3]);
        }
    }
}

template <int VEC, int G, int T, int NT>
__global__ void __launch_bounds__(NT, KV_MINB)
kv_attention(const float* __restrict__ Q, const signed char* __restrict__ K,
             const signed char* __restrict__ V, const float* __restrict__ KS,
             const float* __restrict__ VS, float* __restrict__ out, int S, int D, int chunk,
             int splits, float qk_scale) {
    constexpr int ROWS = NT / G;      // token rows a block covers per step
    constexpr int STEP = ROWS * T;    // tokens per iteration
    constexpr int NW = NT / 32;

    const int h = blockIdx.y, split = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int c = tid % G, r = tid / G;
    const bool active = c * VEC < D;

    float q[VEC];
#pragma unroll
    for (int i = 0; i < VEC; i += 4) {
        float4 v = active ? *reinterpret_cast<const float4*>(Q + (long long)h * D + c * VEC + i)
                          : make_float4(0.f, 0.f, 0.f, 0.f);
        q[i] = v.x; q[i + 1] = v.y; q[i + 2] = v.z; q[i + 3] = v.w;
    }

#if KV_INTERLEAVE
    const int t0 = split * STEP, stride = splits * STEP, t1 = S;
#else
    const int t0 = split * chunk, stride = STEP;
    const int t1 = min(S, t0 + chunk);
#endif
    const long long row0 = (long long)h * S;
    const signed char* kp = K + row0 * D + c * VEC;
    const signed char* vp = V + row0 * D + c * VEC;
    const float* ksp = KS + row0;
    const float* vsp = VS + row0;

    float m = -1e30f, l = 0.0f, acc[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] = 0.0f;

    KvStage<VEC, T> cur;
    kv_load_stage<VEC, T, ROWS>(cur, kp, vp, ksp, vsp, t0, r, t1, D, active);
    for (int base = t0; base < t1; base += stride) {
#if KV_PREFETCH
        KvStage<VEC, T> nxt;
        kv_load_stage<VEC, T, ROWS>(nxt, kp, vp, ksp, vsp, base + stride, r, t1, D, active);
#endif
        kv_consume<VEC, G, T, ROWS>(cur, q, m, l, acc, base, r, t1, qk_scale);
#if KV_PREFETCH
        cur = nxt;
#else
        if (base + stride < t1)
            kv_load_stage<VEC, T, ROWS>(cur, kp, vp, ksp, vsp, base + stride, r, t1, D, active);
#endif
    }

    // ---- merge the block's rows: max, then rescale and sum (warp shuffles, then shared) ----
    __shared__ float sm_m[NW];
    __shared__ float sm_l[NW];
    __shared__ float sm_acc[NW][G * VEC];
    __shared__ float sm_w[KV_MAX_SPLITS];
    __shared__ float sm_red[NT];
    __shared__ unsigned int sm_last;

    float wm = m;
#pragma unroll
    for (int off = G; off < 32; off <<= 1) wm = fmaxf(wm, __shfl_xor_sync(0xffffffffu, wm, off));
    if (lane == 0) sm_m[warp] = wm;
    __syncthreads();
    float M = sm_m[0];
#pragma unroll
    for (int w = 1; w < NW; ++w) M = fmaxf(M, sm_m[w]);
    const float e = kv_exp2(m - M);
    l *= e;
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] *= e;
#pragma unroll
    for (int off = G; off < 32; off <<= 1) {
        l += __shfl_xor_sync(0xffffffffu, l, off);
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
    }
    if (lane < G) {
#pragma unroll
        for (int i = 0; i < VEC; ++i) sm_acc[warp][lane * VEC + i] = acc[i];
        if (lane == 0) sm_l[warp] = l;
    }
    __syncthreads();
    float L = 0.0f;
#pragma unroll
    for (int w = 0; w < NW; ++w) L += sm_l[w];

    if (splits == 1) {
        const float inv = 1.0f / L;
        for (int d = tid; d < D; d += NT) {
            float a = 0.0f;
#pragma unroll
            for (int w = 0; w < NW; ++w) a += sm_acc[w][d];
            out[(long long)h * D + d] = a * inv;
        }
        return;
    }

    // ---- write this split's partial; the last block of the head merges all splits ----
    const int part = h * splits + split;
    for (int d = tid; d < D; d += NT) {
        float a = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) a += sm_acc[w][d];
        kv_ws_acc[(long long)part * D + d] = a;
    }
    if (tid == 0) kv_ws_ml[part] = make_float2(M, L);
    __threadfence();
    __syncthreads();
    if (tid == 0) sm_last = (atomicAdd(&kv_ws_count[h], 1u) == (unsigned int)(splits - 1));
    __syncthreads();
    if (!sm_last) return;
    __threadfence();

    const int first = h * splits;
    float gm = -1e30f;
    for (int i = tid; i < splits; i += NT) gm = fmaxf(gm, __ldcg(&kv_ws_ml[first + i].x));
    sm_red[tid] = gm;
    __syncthreads();
    for (int n = NT / 2; n > 0; n >>= 1) {
        if (tid < n) sm_red[tid] = fmaxf(sm_red[tid], sm_red[tid + n]);
        __syncthreads();
    }
    gm = sm_red[0];
    __syncthreads();
    float gl = 0.0f;
    for (int i = tid; i < splits; i += NT) {
        const float2 ml = __ldcg(&kv_ws_ml[first + i]);
        const float wgt = kv_exp2(ml.x - gm);
        sm_w[i] = wgt;
        gl += ml.y * wgt;
    }
    sm_red[tid] = gl;
    __syncthreads();
    for (int n = NT / 2; n > 0; n >>= 1) {
        if (tid < n) sm_red[tid] += sm_red[tid + n];
        __syncthreads();
    }
    const float inv = 1.0f / sm_red[0];
    __syncthreads();
    const float* ws = kv_ws_acc + (long long)first * D;
    if (D <= NT) {
        const int nsub = NT / D, sub = tid / D, d = tid % D;
        // eight independent partial sums keep eight loads in flight: with one head and
        // hundreds of splits a single dependent chain is latency-bound (~100 us)
        float a[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        if (sub < nsub) {
            int i = sub;
            for (; i + 7 * nsub < splits; i += 8 * nsub) {
#pragma unroll
                for (int u = 0; u < 8; ++u)
                    a[u] += sm_w[i + u * nsub] * __ldcg(ws + (long long)(i + u * nsub) * D + d);
            }
            for (; i < splits; i += nsub) a[0] += sm_w[i] * __ldcg(ws + (long long)i * D + d);
        }
        sm_red[tid] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        __syncthreads();
        if (tid < D) {
            float sum = 0.0f;
            for (int k = 0; k < nsub; ++k) sum += sm_red[k * D + tid];
            out[(long long)h * D + tid] = sum * inv;
        }
    } else {
        for (int d = tid; d < D; d += NT) {
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            int i = 0;
            for (; i + 3 < splits; i += 4) {
#pragma unroll
                for (int u = 0; u < 4; ++u) a[u] += sm_w[i + u] * __ldcg(ws + (long long)(i + u) * D + d);
            }
            for (; i < splits; ++i) a[0] += sm_w[i] * __ldcg(ws + (long long)i * D + d);
            out[(long long)h * D + d] = ((a[0] + a[1]) + (a[2] + a[3])) * inv;
        }
    }
    if (tid == 0) kv_ws_count[h] = 0;   // ready for the next launch (stream order)
}
// ---- END KERNELS ----"""

# must match the defaults of KV_NT, KV_T, KV_MINB and the workspace limits in _KERNELS
_NT, _T, _MINB = 128, 4, 4
_MAX_HEADS, _MAX_SPLITS, _WS_FLOATS, _WS_PARTIALS = 64, 512, 1 << 20, 8192
_MIN_SPLIT_BYTES = 16384
_INSTANCES = [(16, 1), (16, 2), (16, 4), (16, 8), (16, 16),
              (8, 1), (8, 4), (8, 8), (8, 16), (8, 32)]

_modules = {}
_functions = {}
_sm_counts = {}


def _name(vec: int, group: int) -> str:
    return f"kv_attention<{vec}, {group}, {_T}, {_NT}>"


def _kernel(vec: int, group: int):
    key = (cupy.cuda.Device().id, vec, group)
    function = _functions.get(key)
    if function is None:
        module = _modules.get(key[0])
        if module is None:
            module = cupy.RawModule(code=_KERNELS, options=("-std=c++17",),
                                    name_expressions=[_name(v, g) for v, g in _INSTANCES])
            _modules[key[0]] = module
        function = _functions[key] = module.get_function(_name(vec, group))
    return function


def _sm_count() -> int:
    device = cupy.cuda.Device()
    if device.id not in _sm_counts:
        _sm_counts[device.id] = device.attributes["MultiProcessorCount"]
    return _sm_counts[device.id]


def _next_pow2(x: int) -> int:
    p = 1
    while p < x:
        p <<= 1
    return p


def plan(num_heads: int, seq_len: int, head_dim: int, sms: int):
    """(vec, group, chunk, splits), as solution.cu's launch() chooses them."""
    vec = 16 if head_dim % 16 == 0 else 8
    group = _next_pow2(head_dim // vec)
    splits = (sms * _MINB) // num_heads
    min_tokens = -(-_MIN_SPLIT_BYTES // (2 * head_dim))
    splits = min(splits, -(-seq_len // min_tokens), _MAX_SPLITS, _WS_PARTIALS // num_heads,
                 _WS_FLOATS // (num_heads * head_dim))
    splits = max(1, splits)
    chunk = -(-seq_len // splits)
    splits = -(-seq_len // chunk)
    return vec, group, chunk, splits


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    num_heads, seq_len, head_dim = int(num_heads), int(seq_len), int(head_dim)
    if not (0 < num_heads <= _MAX_HEADS and seq_len > 0 and 0 < head_dim <= 256
            and head_dim % 8 == 0):
        raise ValueError("shape outside the challenge's constraints")
    vec, group, chunk, splits = plan(num_heads, seq_len, head_dim, _sm_count())
    qk_scale = np.float32(1.4426950408889634 / math.sqrt(head_dim))
    _kernel(vec, group)((splits, num_heads), (_NT,),
                        (Q, K_int8, V_int8, k_scale, v_scale, output, np.int32(seq_len),
                         np.int32(head_dim), np.int32(chunk), np.int32(splits), qk_scale))
