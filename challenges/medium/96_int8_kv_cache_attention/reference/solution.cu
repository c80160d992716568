// INT8 KV-cache decode attention (challenge 96): one fused kernel at the memory-bandwidth floor.
//
// Flash-decoding: block (split, head) streams one contiguous chunk of one head's sequence.
// Each group of G lanes owns one token row at a time; each lane owns VEC (16 or 8) dims of it
// and reads them with one 16- or 8-byte load. Scales are factored out of the dot products:
//     score = k_scale[s] * (q . k_int8[s]) * log2(e) / sqrt(d)      (log2 domain, exp2)
//     acc  += (exp2(score - m) * v_scale[s]) * v_int8[s]
// int8 -> float costs one byte-permute and one add ("magic number": the byte, biased by 128,
// becomes the low mantissa byte of 2^23) instead of a conversion instruction, which on Hopper
// runs at 1/8 of the FMA rate. Each lane keeps its own running max, sum and accumulator; a
// block merges its lanes at the end, and the last block of a head to finish (an atomic
// counter) merges the splits by log-sum-exp and writes the output: one launch, no host sync,
// a fixed workspace in device globals (no allocation).
//
// The kernel section between the BEGIN/END markers is shared verbatim with solution.cupy.py
// (tests/test_reference_solutions.py checks that), so it includes no headers and uses only
// built-in types.

#include <cuda_runtime.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>

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
// ---- END KERNELS ----

namespace {

#ifndef KV_WAVES
#define KV_WAVES 1       // blocks per resident slot: more, shorter splits balance the SMs' finish
#endif
#ifndef KV_MIN_SPLIT_BYTES
#define KV_MIN_SPLIT_BYTES 16384
#endif
constexpr int kMinSplitBytes = KV_MIN_SPLIT_BYTES;   // K+V bytes a split should stream at least

int next_pow2(int x) {
    int p = 1;
    while (p < x) p <<= 1;
    return p;
}

int sm_count() {
    static int cached[64] = {0};
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
    if (cached[dev] == 0) {
        int n = 0;
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        cached[dev] = n > 0 ? n : 132;
    }
    return cached[dev];
}

template <int VEC, int G>
void launch(const float* Q, const int8_t* K, const int8_t* V, const float* KS, const float* VS,
            float* out, int H, int S, int D) {
    // one wave: as many (head, split) blocks as fit on the GPU at once, but each split long
    // enough to be worth a block, and within the workspace
    const long long capacity = (long long)sm_count() * KV_MINB * KV_WAVES;
    long long splits = capacity / H;
    const long long min_tokens = (kMinSplitBytes + 2LL * D - 1) / (2LL * D);
    splits = std::min<long long>(splits, (S + min_tokens - 1) / min_tokens);
    splits = std::min<long long>(splits, KV_MAX_SPLITS);
    splits = std::min<long long>(splits, KV_WS_PARTIALS / H);
    splits = std::min<long long>(splits, KV_WS_FLOATS / ((long long)H * D));
    if (splits < 1) splits = 1;
    const int chunk = (int)((S + splits - 1) / splits);
    splits = (S + chunk - 1) / chunk;
    const float qk_scale = (float)(1.4426950408889634 / std::sqrt((double)D));
    kv_attention<VEC, G, KV_T, KV_NT><<<dim3((unsigned)splits, (unsigned)H), KV_NT>>>(
        Q, reinterpret_cast<const signed char*>(K), reinterpret_cast<const signed char*>(V), KS, VS,
        out, S, D, chunk, (int)splits, qk_scale);
}

}  // namespace

extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output, int num_heads,
                      int seq_len, int head_dim) {
    if (num_heads <= 0 || seq_len <= 0 || head_dim <= 0 || head_dim % 8 != 0 ||
        head_dim > 256 || num_heads > KV_MAX_HEADS)
        return;
    const int H = num_heads, S = seq_len, D = head_dim;
    if (D % 16 == 0) {
        switch (next_pow2(D / 16)) {
            case 1: launch<16, 1>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            case 2: launch<16, 2>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            case 4: launch<16, 4>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            case 8: launch<16, 8>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            default: launch<16, 16>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
        }
    } else {
        switch (next_pow2(D / 8)) {
            case 1: launch<8, 1>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            case 4: launch<8, 4>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            case 8: launch<8, 8>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            case 16: launch<8, 16>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
            default: launch<8, 32>(Q, K_int8, V_int8, k_scale, v_scale, output, H, S, D); break;
        }
    }
}
