// Paged INT8 decode attention with grouped-query heads (challenge 98): split-K.
//
// Two pass-1 kernels share one plan. Block (kv head x head tile, chunk, sequence) streams tokens
// [chunk * CH, ...) of one sequence for one KV head and serves that KV head's query heads at
// once, so each K/V byte is read once per KV head. The blocks of one chunk's KV heads are
// adjacent in launch order, so the 32-byte sectors of scales and the block-table entries they
// share are read from DRAM once. Token p of sequence b is at physical row
//     (block_table[b][p / block_size] * block_size + p % block_size) * num_kv_heads + kv_head.
// Scales are factored out of the dot products (log2 domain):
//     score = k_scale * (q . k_int8) * log2(e) / sqrt(d),   acc += exp2(score - m) * v_scale * v_int8
// int8 -> float/half is a byte-permute and one subtract ("magic number": the byte, biased by
// 128, becomes the low mantissa bits of a power of two), not a conversion instruction, which on
// Hopper runs at a fraction of the FMA rate.
//
//  - paged_partial_tc (head_dim 64 or 128, block_size a multiple of 16: the perf case): both
//    products on tensor cores, see the section below. 204 us on the perf case on an H100
//    (2.42 TB/s, 72% of HBM peak).
//  - paged_partial (every other shape): float32 FMAs; each group of LPR lanes owns one token
//    row at a time, each lane VEC (16 or 8) dims of it, read with one 16- or 8-byte load, and
//    keeps a running max, sum and accumulator per query head (rescaled only when the max
//    grows). 386 us on the perf case (38% of peak): issue-bound on the conversions and FMAs.
//
// A sequence that fits in one chunk is written straight to the output; otherwise the chunks are
// merged by log-sum-exp: by the last block of the sequence to finish (tensor-core path, an
// atomic counter per sequence and head tile) or by a second kernel, block (head, sequence)
// (float32 path). No host synchronisation (the grid is sized from max_blocks_per_seq, and
// blocks past a sequence's end exit at once), no allocation (the partials live in fixed device
// arrays; the chunk length grows when they would not fit).

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>

#ifndef PG_NT
#define PG_NT 128           // threads per block
#endif
#ifndef PG_T
#define PG_T 4              // token rows per lane per iteration (loads in flight: 2 * PG_T)
#endif
#ifndef PG_MINB
#define PG_MINB 2           // blocks per SM the register budget is sized for
#endif
#ifndef PG_CHUNK
#define PG_CHUNK 512        // preferred tokens per block (longer when the grid would be small)
#endif
#ifndef PG_WAVES
#define PG_WAVES 8          // blocks per SM the grid should offer at least (upper bound)
#endif

#define PG_MAX_CHUNKS 1024                  // per sequence (the merge keeps weights in shared)
#define PG_WS_FLOATS (1 << 23)              // partial accumulators: batch * heads * chunks * d
#define PG_WS_PARTIALS (1 << 20)            // (max, sum) pairs: batch * heads * chunks

__device__ float pg_ws_acc[PG_WS_FLOATS];
__device__ float2 pg_ws_ml[PG_WS_PARTIALS];
__device__ int pg_done[256 * 64];             // per (sequence, KV head x head tile): chunks done

namespace {

__device__ __forceinline__ float pg_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// biased = four int8 values XOR 0x80808080 (each byte is then value + 128, unsigned);
// byte I under the exponent of 2^23 is 2^23 + value + 128 exactly.
template <int I>
__device__ __forceinline__ float pg_byte(unsigned int biased) {
    return __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7540u | I)) - 8388736.0f;
}

template <int VEC>
__device__ __forceinline__ void pg_load(unsigned int (&w)[VEC / 4], const signed char* p) {
    if constexpr (VEC == 16) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
        w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
    } else {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
        w[0] = v.x; w[1] = v.y;
    }
}

template <int VEC, int GT>
__global__ void __launch_bounds__(PG_NT, PG_MINB)
paged_partial(const float* __restrict__ Q, const signed char* __restrict__ KC,
              const signed char* __restrict__ VC, const float* __restrict__ KS,
              const float* __restrict__ VS, const int* __restrict__ BT,
              const int* __restrict__ LENS, float* __restrict__ out, int H, int KVH, int D,
              int bs, int bs_shift, int max_blocks, int max_chunks, int chunk, int group,
              int head_tiles, int lpr, float qk_scale) {
    constexpr int W = VEC / 4;          // 32-bit words per lane per row
    constexpr int NW = PG_NT / 32;
    constexpr int T = PG_T;
    const int kvh = blockIdx.x / head_tiles, tile = blockIdx.x % head_tiles;
    const int c = blockIdx.y, b = blockIdx.z;
    const int len = __ldg(LENS + b);
    const int t0 = c * chunk;
    if (t0 >= len) return;                              // the whole block: past the sequence
    const int t1 = min(len, t0 + chunk);
    const int rows = PG_NT / lpr;                       // token rows per step
    const int step = rows * T;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int lc = tid % lpr, r = tid / lpr;
    const bool active = lc * VEC < D;
    const int g0 = tile * GT;                            // first query head of the tile, in the group
    const int ng = min(GT, group - g0);
    const int h0 = kvh * group + g0;

    float q[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; ++g) {
#pragma unroll
        for (int i = 0; i < VEC; i += 4) {
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (active && g < ng)
                v = *reinterpret_cast<const float4*>(Q + ((long long)b * H + h0 + g) * D + lc * VEC + i);
            q[g][i] = v.x * qk_scale; q[g][i + 1] = v.y * qk_scale;
            q[g][i + 2] = v.z * qk_scale; q[g][i + 3] = v.w * qk_scale;
        }
    }

    float m[GT], l[GT], acc[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; ++g) {
        m[g] = -1e30f;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[g][i] = 0.0f;
    }
    const int* table = BT + (long long)b * max_blocks;

    for (int base = t0; base < t1; base += step) {
        unsigned int kw[T][W], vw[T][W];
        float ks[T], vs[T];
#pragma unroll
        for (int j = 0; j < T; ++j) {
            const int t = base + j * rows + r;
            if (t < t1) {
                // block and offset of position t (a shift and a mask for power-of-two sizes)
                const int bi = bs_shift >= 0 ? (t >> bs_shift) : t / bs;
                const int off = bs_shift >= 0 ? (t & (bs - 1)) : t - bi * bs;
                const int blk = __ldg(table + bi);
                const long long row = ((long long)blk * bs + off) * KVH + kvh;
                if (active) {
                    pg_load<VEC>(kw[j], KC + row * D + lc * VEC);
                    pg_load<VEC>(vw[j], VC + row * D + lc * VEC);
                } else {
#pragma unroll
                    for (int w = 0; w < W; ++w) { kw[j][w] = 0u; vw[j][w] = 0u; }
                }
                ks[j] = __ldg(KS + row);
                vs[j] = __ldg(VS + row);
            } else {
#pragma unroll
                for (int w = 0; w < W; ++w) { kw[j][w] = 0u; vw[j][w] = 0u; }
                ks[j] = 0.0f;
                vs[j] = 0.0f;
            }
        }
        // scores of the T rows for every head of the tile; lanes of a row sum their parts
        float s[T][GT];
#pragma unroll
        for (int j = 0; j < T; ++j) {
            float dot[GT];
#pragma unroll
            for (int g = 0; g < GT; ++g) dot[g] = 0.0f;
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const unsigned int x = kw[j][w] ^ 0x80808080u;
                const float k0 = pg_byte<0>(x), k1 = pg_byte<1>(x);
                const float k2 = pg_byte<2>(x), k3 = pg_byte<3>(x);
#pragma unroll
                for (int g = 0; g < GT; ++g) {
                    dot[g] = fmaf(q[g][4 * w + 0], k0, dot[g]);
                    dot[g] = fmaf(q[g][4 * w + 1], k1, dot[g]);
                    dot[g] = fmaf(q[g][4 * w + 2], k2, dot[g]);
                    dot[g] = fmaf(q[g][4 * w + 3], k3, dot[g]);
                }
            }
            for (int off = lpr >> 1; off > 0; off >>= 1) {
#pragma unroll
                for (int g = 0; g < GT; ++g) dot[g] += __shfl_xor_sync(0xffffffffu, dot[g], off);
            }
            const bool in = base + j * rows + r < t1;
#pragma unroll
            for (int g = 0; g < GT; ++g) s[j][g] = in ? dot[g] * ks[j] : -INFINITY;
        }
        // online softmax per head: rescale only when this lane's running max grows
#pragma unroll
        for (int g = 0; g < GT; ++g) {
            float smax = m[g];
#pragma unroll
            for (int j = 0; j < T; ++j) smax = fmaxf(smax, s[j][g]);
            if (smax > m[g]) {
                const float alpha = pg_exp2(m[g] - smax);
                l[g] *= alpha;
#pragma unroll
                for (int i = 0; i < VEC; ++i) acc[g][i] *= alpha;
                m[g] = smax;
            }
        }
#pragma unroll
        for (int j = 0; j < T; ++j) {
            float wgt[GT];
#pragma unroll
            for (int g = 0; g < GT; ++g) {
                const float p = pg_exp2(s[j][g] - m[g]);   // 0 for rows past the end
                l[g] += p;
                wgt[g] = p * vs[j];
            }
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const unsigned int x = vw[j][w] ^ 0x80808080u;
                const float v0 = pg_byte<0>(x), v1 = pg_byte<1>(x);
                const float v2 = pg_byte<2>(x), v3 = pg_byte<3>(x);
#pragma unroll
                for (int g = 0; g < GT; ++g) {
                    acc[g][4 * w + 0] = fmaf(wgt[g], v0, acc[g][4 * w + 0]);
                    acc[g][4 * w + 1] = fmaf(wgt[g], v1, acc[g][4 * w + 1]);
                    acc[g][4 * w + 2] = fmaf(wgt[g], v2, acc[g][4 * w + 2]);
                    acc[g][4 * w + 3] = fmaf(wgt[g], v3, acc[g][4 * w + 3]);
                }
            }
        }
    }

    // ---- merge the block's rows: per head, the max, then rescaled sums (shuffles, shared) ----
    __shared__ float sm_m[NW][GT];
    __shared__ float sm_l[NW][GT];
    __shared__ float sm_acc[NW][GT][256];               // head_dim <= 256
    __shared__ float sm_M[GT];
    __shared__ float sm_L[GT];

#pragma unroll
    for (int g = 0; g < GT; ++g) {
        float wm = m[g];
        for (int off = lpr; off < 32; off <<= 1) wm = fmaxf(wm, __shfl_xor_sync(0xffffffffu, wm, off));
        if (lane == 0) sm_m[warp][g] = wm;
    }
    __syncthreads();
    if (tid < GT) {
        float M = sm_m[0][tid];
#pragma unroll
        for (int w = 1; w < NW; ++w) M = fmaxf(M, sm_m[w][tid]);
        sm_M[tid] = M;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < GT; ++g) {
        const float e = pg_exp2(m[g] - sm_M[g]);         // lanes that saw no token: m = -1e30 -> 0
        l[g] *= e;
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[g][i] *= e;
        for (int off = lpr; off < 32; off <<= 1) {
            l[g] += __shfl_xor_sync(0xffffffffu, l[g], off);
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], off);
        }
        if (lane < lpr) {                                // the first row group of each warp
            if (active) {
#pragma unroll
                for (int i = 0; i < VEC; ++i) sm_acc[warp][g][lc * VEC + i] = acc[g][i];
            }
            if (lane == 0) sm_l[warp][g] = l[g];
        }
    }
    __syncthreads();
    if (tid < GT) {
        float L = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) L += sm_l[w][tid];
        sm_L[tid] = L;
    }
    __syncthreads();

    const bool single = t0 == 0 && t1 == len;            // the whole sequence is in this block
    for (int idx = tid; idx < ng * D; idx += PG_NT) {
        const int g = idx / D, d = idx % D;
        float a = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) a += sm_acc[w][g][d];
        const long long head = (long long)b * H + h0 + g;
        if (single)
            out[head * D + d] = a / sm_L[g];
        else
            pg_ws_acc[(head * max_chunks + c) * D + d] = a;
    }
    if (!single && tid < ng) {
        const long long head = (long long)b * H + h0 + tid;
        pg_ws_ml[head * max_chunks + c] = make_float2(sm_M[tid], sm_L[tid]);
    }
}

__global__ void __launch_bounds__(PG_NT)
paged_merge(const int* __restrict__ LENS, float* __restrict__ out, int H, int D, int max_chunks,
            int chunk) {
    __shared__ float sm_w[PG_MAX_CHUNKS];
    __shared__ float sm_red[PG_NT];
    const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
    const int len = __ldg(LENS + b);
    const int n = (len + chunk - 1) / chunk;
    if (n <= 1) return;                                  // pass 1 wrote it
    const long long first = ((long long)b * H + h) * max_chunks;

    float gm = -1e30f;
    for (int i = tid; i < n; i += PG_NT) gm = fmaxf(gm, __ldcg(&pg_ws_ml[first + i].x));
    sm_red[tid] = gm;
    __syncthreads();
    for (int k = PG_NT / 2; k > 0; k >>= 1) {
        if (tid < k) sm_red[tid] = fmaxf(sm_red[tid], sm_red[tid + k]);
        __syncthreads();
    }
    gm = sm_red[0];
    __syncthreads();
    float gl = 0.0f;
    for (int i = tid; i < n; i += PG_NT) {
        const float2 ml = __ldcg(&pg_ws_ml[first + i]);
        const float w = pg_exp2(ml.x - gm);
        sm_w[i] = w;
        gl += ml.y * w;
    }
    sm_red[tid] = gl;
    __syncthreads();
    for (int k = PG_NT / 2; k > 0; k >>= 1) {
        if (tid < k) sm_red[tid] += sm_red[tid + k];
        __syncthreads();
    }
    const float inv = 1.0f / sm_red[0];
    const float* ws = pg_ws_acc + first * D;
    for (int d = tid; d < D; d += PG_NT) {
        float a = 0.0f;
        for (int i = 0; i < n; ++i) a += sm_w[i] * __ldcg(ws + (long long)i * D + d);
        out[((long long)b * H + h) * D + d] = a * inv;
    }
}

// ---- tensor-core pass 1: head_dim 64 or 128, block_size a multiple of 16 --------------------
//
// A warp takes 16 tokens at a time (they lie in one paged block) and does both products with
// mma.sync m16n8k16 (fp16 in, fp32 accumulate). The 16 rows of the A operand hold the query
// heads twice: the "hi" fp16 half of each (normalised) query and the "lo" fp16 remainder, so
// hi + lo carries ~22 bits and the scores are as exact as float32 FMAs; int8 K and V are exact
// in fp16 (byte-permute into 1024 + (x + 128), then subtract 1152). For P.V the weights
// p * v_scale are split the same way, after multiplying by a power of two chosen so they stay
// in fp16's normal range (the exponent of the largest v_scale seen so far, tracked like the
// softmax max). A tensor-core step does the work of ~200 FMA instructions, so the kernel is left
// waiting only on memory.
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4): A regs {row g, k 2t..},
// {row g+8, k 2t..}, {row g, k 2t+8..}, {row g+8, k 2t+8..}; B regs {k 2t.., n g}, {k 2t+8.., n g};
// C {row g, n 2t, 2t+1}, {row g+8, n 2t, 2t+1}. The contraction order is ours to choose:
//  - Q.K^T: rows = (head, hi|lo), n = token (two n-tiles: tokens g and g + 8), k = dims; lane
//    (g, t) reads dims 64c + 16t + [0, 16) of its token for each 64 dims c (the four lanes of a
//    token read 64 contiguous bytes per load: whole 32-byte sectors), one 32-bit word per k-step.
//  - P.V: rows = (head, hi|lo), k = the tile's 16 tokens (the C layout of Q.K^T is already the
//    A layout), n = dims; lane (g, t) reads dims [g * D/8, (g + 1) * D/8) of tokens 2t, 2t + 1,
//    2t + 8, 2t + 9, so n-tile j's column n is dim n * D/8 + j.
// With HT <= 4 heads per tile, rows 0..HT-1 are hi, HT..2HT-1 lo (lane g and lane g ^ 4HT hold
// the two halves of one score) and rows 8..15 are zero; with HT = 8, rows g and g + 8 are the
// hi and lo halves of head g in the same lane.

#ifndef PG_TC_MINB
#define PG_TC_MINB 2        // blocks per SM the tensor-core kernel's registers are sized for
#endif
#ifndef PG_TC_CHUNK
#define PG_TC_CHUNK 2048    // preferred tokens per block of the tensor-core kernel
#endif
#define PG_TC_WARPS 4
#define PG_TC_MAX_CHUNK 8192                // tokens: bounds the block-table slice kept in shared
#define PG_TC_TABLE (PG_TC_MAX_CHUNK / 16 + 2)

__device__ __forceinline__ unsigned int pg_half2_bits(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned int*>(&h);
}

// two int8 (the bytes of biased picked by SEL, already XOR 0x80) as an exact half2
template <unsigned int SEL>
__device__ __forceinline__ unsigned int pg_i8x2_to_half2(unsigned int biased) {
    unsigned int h = __byte_perm(biased, 0x64646464u, SEL);       // 1024 + (x + 128), exact
    const unsigned int bias = 0x64806480u;                          // 1152 in both halves
    asm("sub.rn.f16x2 %0, %0, %1;" : "+r"(h) : "r"(bias));
    return h;
}

__device__ __forceinline__ void pg_mma(float (&d)[4], unsigned int a0, unsigned int a1,
                                       unsigned int a2, unsigned int a3, unsigned int b0,
                                       unsigned int b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// rows 8..15 of A are zero: only d0, d1 carry results (d2, d3 would stay 0)
__device__ __forceinline__ void pg_mma_top(float& d0, float& d1, unsigned int a0, unsigned int a2,
                                           unsigned int b0, unsigned int b1) {
    float z0 = 0.0f, z1 = 0.0f;
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d0), "+f"(d1), "+f"(z0), "+f"(z1)
                 : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

#ifndef PG_TC_L2PF
#define PG_TC_L2PF 1        // 1: loads ask L2 to fetch the whole 256-byte span around them
#endif

__device__ __forceinline__ uint4 pg_ldg16(const signed char* p) {
#if PG_TC_L2PF
    uint4 v;
    asm("ld.global.nc.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
#else
    return __ldg(reinterpret_cast<const uint4*>(p));
#endif
}

template <int D>
struct PgTile {
    unsigned int k[2][D / 16];      // K: tokens g and g + 8, dims 64c + 16t + [0, 16) per 64 dims c
    unsigned int v[4][D / 32];      // V: tokens 2t, 2t+1, 2t+8, 2t+9, dims [g * D/8, +D/8)
    float ks[4], vs[4];             // scales of tokens 2t, 2t+1, 2t+8, 2t+9
};

template <int D>
__device__ __forceinline__ void pg_load_tile(PgTile<D>& tl, const signed char* KC,
                                             const signed char* VC, const float* KS,
                                             const float* VS, long long row0,
                                             const int (&koff)[2], const int (&voff)[4],
                                             const int (&soff)[4]) {
#pragma unroll
    for (int n = 0; n < 2; ++n) {
        const signed char* p = KC + row0 * D + koff[n];
#pragma unroll
        for (int w = 0; w < D / 16; w += 4) {
            const uint4 x = pg_ldg16(p + 16 * w);                        // w / 4 = c: +64 bytes
            tl.k[n][w] = x.x; tl.k[n][w + 1] = x.y; tl.k[n][w + 2] = x.z; tl.k[n][w + 3] = x.w;
        }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const signed char* p = VC + row0 * D + voff[r];
        if constexpr (D / 32 == 4) {
            const uint4 x = pg_ldg16(p);
            tl.v[r][0] = x.x; tl.v[r][1] = x.y; tl.v[r][2] = x.z; tl.v[r][3] = x.w;
        } else {
            const uint2 x = __ldg(reinterpret_cast<const uint2*>(p));
            tl.v[r][0] = x.x; tl.v[r][1] = x.y;
        }
        tl.ks[r] = __ldg(KS + row0 + soff[r]);
        tl.vs[r] = __ldg(VS + row0 + soff[r]);
    }
}

template <int D, int HT>
struct PgWarpState {
    float acc[D / 8][HT == 8 ? 4 : 2];  // P.V accumulators, n-tile j: C regs of rows g (, g + 8)
    float m = -1e30f;                   // running max (log2 domain) of this lane's head
    float l = 0.0f;                     // this lane's share of the softmax denominator
    int r = 12;                         // biased exponent E: weights are scaled by 2^(139 - E)
};

template <int D, int HT>
__device__ __forceinline__ void pg_tile_step(PgWarpState<D, HT>& st, const PgTile<D>& tl,
                                             const unsigned int (&qa)[D / 16][HT == 8 ? 4 : 2],
                                             float qinv, int valid, int role, int t) {
    constexpr int KSTEPS = D / 16, NT = D / 8;
    // ---- scores of the tile's 16 tokens: S^T = Qsplit . K^T, two n-tiles of 8 tokens ----
    float s[2][2];
#pragma unroll
    for (int n = 0; n < 2; ++n) {
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < KSTEPS; ++j) {
            const unsigned int x = tl.k[n][j] ^ 0x80808080u;
            const unsigned int b0 = pg_i8x2_to_half2<0x4140>(x), b1 = pg_i8x2_to_half2<0x4342>(x);
            if constexpr (HT == 8)
                pg_mma(c, qa[j][0], qa[j][1], qa[j][2], qa[j][3], b0, b1);
            else
                pg_mma_top(c[0], c[1], qa[j][0], qa[j][1], b0, b1);
        }
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            float v;
            if constexpr (HT == 8) v = c[e] + c[2 + e];                        // hi + lo rows
            else v = c[e] + __shfl_xor_sync(0xffffffffu, c[e], 4 * HT);         // partner lane
            const int r = 2 * n + e;                                           // token 2t + e + 8n
            s[n][e] = (8 * n + 2 * t + e < valid) ? v * qinv * tl.ks[r] : -INFINITY;
        }
    }
    // ---- online softmax: new max per head, new weight exponent per warp ----
    float tmax = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
    float vs[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) vs[r] = ((r & 1) + 2 * t + 8 * (r >> 1) < valid) ? tl.vs[r] : 0.0f;
    float vmax = fmaxf(fmaxf(vs[0], vs[1]), fmaxf(vs[2], vs[3]));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 1));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 2));
    const int rn = max(st.r, __float_as_int(vmax) >> 23);
    const float mn = fmaxf(st.m, tmax);
    if (__any_sync(0xffffffffu, mn > st.m || rn > st.r)) {
        const float a = pg_exp2(st.m - mn);
        const int de = st.r - rn;                                       // <= 0
        const float f = a * (de > -127 ? __int_as_float((127 + de) << 23) : 0.0f);
        st.l *= a;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
            for (int i = 0; i < (HT == 8 ? 4 : 2); ++i) st.acc[j][i] *= f;
        }
        st.m = mn;
        st.r = rn;
    }
    const float scale = __int_as_float((266 - st.r) << 23);            // 2^(139 - E)
    float hi[2][2], lo[2][2];
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const float p = pg_exp2(s[n][e] - st.m);                    // 0 past the end
            st.l += p;
            const float w = p * vs[2 * n + e] * scale;                 // < 2^13
            const __half h = __float2half_rn(w);
            hi[n][e] = __half2float(h);
            lo[n][e] = w - hi[n][e];
        }
    }
    unsigned int pa[4];                                                 // A regs of P
    if constexpr (HT == 8) {
        pa[0] = pg_half2_bits(hi[0][0], hi[0][1]);
        pa[1] = pg_half2_bits(lo[0][0], lo[0][1]);
        pa[2] = pg_half2_bits(hi[1][0], hi[1][1]);
        pa[3] = pg_half2_bits(lo[1][0], lo[1][1]);
    } else {
        const bool is_hi = role == 1, is_lo = role == 2;
        pa[0] = is_hi ? pg_half2_bits(hi[0][0], hi[0][1]) : is_lo ? pg_half2_bits(lo[0][0], lo[0][1]) : 0u;
        pa[2] = is_hi ? pg_half2_bits(hi[1][0], hi[1][1]) : is_lo ? pg_half2_bits(lo[1][0], lo[1][1]) : 0u;
        pa[1] = pa[3] = 0u;
    }
    // ---- acc += P . V over the 16 tokens, n-tile j = dims {n * D/8 + j} ----
#pragma unroll
    for (int i = 0; i < D / 32; ++i) {
        const unsigned int x0 = tl.v[0][i] ^ 0x80808080u, x1 = tl.v[1][i] ^ 0x80808080u;
        const unsigned int x2 = tl.v[2][i] ^ 0x80808080u, x3 = tl.v[3][i] ^ 0x80808080u;
        const unsigned int lo01 = __byte_perm(x0, x1, 0x5140), hi01 = __byte_perm(x0, x1, 0x7362);
        const unsigned int lo23 = __byte_perm(x2, x3, 0x5140), hi23 = __byte_perm(x2, x3, 0x7362);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const unsigned int s01 = e < 2 ? lo01 : hi01, s23 = e < 2 ? lo23 : hi23;
            const unsigned int b0 = (e & 1) ? pg_i8x2_to_half2<0x4342>(s01) : pg_i8x2_to_half2<0x4140>(s01);
            const unsigned int b1 = (e & 1) ? pg_i8x2_to_half2<0x4342>(s23) : pg_i8x2_to_half2<0x4140>(s23);
            if constexpr (HT == 8)
                pg_mma(st.acc[4 * i + e], pa[0], pa[1], pa[2], pa[3], b0, b1);
            else
                pg_mma_top(st.acc[4 * i + e][0], st.acc[4 * i + e][1], pa[0], pa[2], b0, b1);
        }
    }
}

template <int D, int HT>
__global__ void __launch_bounds__(32 * PG_TC_WARPS, PG_TC_MINB)
paged_partial_tc(const float* __restrict__ Q, const signed char* __restrict__ KC,
                 const signed char* __restrict__ VC, const float* __restrict__ KS,
                 const float* __restrict__ VS, const int* __restrict__ BT,
                 const int* __restrict__ LENS, float* __restrict__ out, int H, int KVH, int bs,
                 int max_blocks, int max_chunks, int chunk, int group, int head_tiles,
                 float qk_scale) {
    const int gridDim_x = KVH * head_tiles;
    constexpr int NW = PG_TC_WARPS, KSTEPS = D / 16, NT = D / 8;
    constexpr int QA = HT == 8 ? 4 : 2;
    const int kvh = blockIdx.x / head_tiles, tile = blockIdx.x % head_tiles;
    const int c = blockIdx.y, b = blockIdx.z;
    const int len = __ldg(LENS + b);
    const int t0 = c * chunk;
    if (t0 >= len) return;
    const int t1 = min(len, t0 + chunk);

    __shared__ int sm_table[PG_TC_TABLE];
    __shared__ float sm_acc[NW][HT][D];
    __shared__ float sm_m[NW][HT], sm_l[NW][HT], sm_M[HT], sm_L[HT];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int first_block = t0 / bs;
    const int n_table = (t1 - 1) / bs - first_block + 1;
    const int* table = BT + (long long)b * max_blocks + first_block;
    for (int i = tid; i < n_table; i += 32 * NW) sm_table[i] = __ldg(table + i);

    // ---- this lane's query row: head, hi/lo role, normalised by a power of two ----
    const int g0 = tile * 8;
    const int ng = min(HT, group - g0);
    const int h0 = kvh * group + g0;
    const int head = HT == 8 ? g : (g < 2 * HT ? g % HT : HT);       // HT: padding row
    const int role = HT == 8 ? 1 : (g < HT ? 1 : (g < 2 * HT ? 2 : 0));
    float q[D / 4];
#pragma unroll
    for (int i = 0; i < D / 4; i += 4) {
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (head < ng)
            v = __ldg(reinterpret_cast<const float4*>(Q + ((long long)b * H + h0 + head) * D + 64 * (i / 16) + 16 * t + i % 16));
        q[i] = v.x * qk_scale; q[i + 1] = v.y * qk_scale; q[i + 2] = v.z * qk_scale; q[i + 3] = v.w * qk_scale;
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < D / 4; ++i) amax = fmaxf(amax, fabsf(q[i]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    int ex = 0;
    if (amax > 0.0f) frexpf(amax, &ex);
    const int shift = min(100, max(-100, 9 - ex));                   // max |q| -> [256, 512)
    const float qinv = ldexpf(1.0f, -shift);
    unsigned int qa[KSTEPS][QA];
#pragma unroll
    for (int j = 0; j < KSTEPS; ++j) {
        float hv[4], lv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float x = ldexpf(q[4 * j + e], shift);
            hv[e] = __half2float(__float2half_rn(x));
            lv[e] = x - hv[e];
        }
        if constexpr (HT == 8) {
            qa[j][0] = pg_half2_bits(hv[0], hv[1]);
            qa[j][1] = pg_half2_bits(lv[0], lv[1]);
            qa[j][2] = pg_half2_bits(hv[2], hv[3]);
            qa[j][3] = pg_half2_bits(lv[2], lv[3]);
        } else {
            qa[j][0] = role == 1 ? pg_half2_bits(hv[0], hv[1]) : role == 2 ? pg_half2_bits(lv[0], lv[1]) : 0u;
            qa[j][1] = role == 1 ? pg_half2_bits(hv[2], hv[3]) : role == 2 ? pg_half2_bits(lv[2], lv[3]) : 0u;
        }
    }

    // per-lane offsets inside a tile (in rows of the [slots * KVH] view, and bytes within a row)
    const int rs = KVH * D;                                            // bytes per token
    const int koff[2] = {g * rs + 16 * t, (g + 8) * rs + 16 * t};
    int voff[4];
    int soff[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int tok = 2 * t + (r & 1) + 8 * (r >> 1);
        voff[r] = tok * rs + g * (D / 8);
        soff[r] = tok * KVH;
    }

    PgWarpState<D, HT> st;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int i = 0; i < QA; ++i) st.acc[j][i] = 0.0f;
    }
    __syncthreads();                                                   // sm_table is ready

    auto row_of = [&](int i) -> long long {                            // row of tile i's token 0
        const int pos = t0 + 16 * i;
        const int blk = sm_table[pos / bs - first_block];
        return ((long long)blk * bs + pos % bs) * KVH + kvh;
    };
    const int ntiles = (t1 - t0 + 15) / 16;                            // warp w takes w, w + NW, ...
    PgTile<D> ta, tb;
    if (warp < ntiles) pg_load_tile<D>(ta, KC, VC, KS, VS, row_of(warp), koff, voff, soff);
    for (int i = warp; i < ntiles; i += 2 * NW) {
        if (i + NW < ntiles) pg_load_tile<D>(tb, KC, VC, KS, VS, row_of(i + NW), koff, voff, soff);
        pg_tile_step<D, HT>(st, ta, qa, qinv, t1 - (t0 + 16 * i), role, t);
        if (i + NW >= ntiles) break;
        if (i + 2 * NW < ntiles) pg_load_tile<D>(ta, KC, VC, KS, VS, row_of(i + 2 * NW), koff, voff, soff);
        pg_tile_step<D, HT>(st, tb, qa, qinv, t1 - (t0 + 16 * (i + NW)), role, t);
    }

    // ---- the warp's result per head: hi + lo halves, the weight scale undone ----
    float lsum = st.l;
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
    const float unscale = ldexpf(1.0f, st.r - 139);
    const bool owner = role == 1 && head < ng;                         // lanes that write a head
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            float v;
            if constexpr (HT == 8) v = st.acc[j][e] + st.acc[j][2 + e];
            else v = st.acc[j][e] + __shfl_xor_sync(0xffffffffu, st.acc[j][e], 4 * HT);
            if (owner) sm_acc[warp][head][(2 * t + e) * (D / 8) + j] = v * unscale;
        }
    }
    if (owner && t == 0) {
        sm_m[warp][head] = st.m;
        sm_l[warp][head] = lsum;
    }
    __syncthreads();
    // ---- merge the warps, then write the output (one chunk) or a partial for pass 2 ----
    if (tid < ng) {
        float M = sm_m[0][tid];
#pragma unroll
        for (int w = 1; w < NW; ++w) M = fmaxf(M, sm_m[w][tid]);
        float L = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) L += sm_l[w][tid] * pg_exp2(sm_m[w][tid] - M);
        sm_M[tid] = M;
        sm_L[tid] = L;
    }
    __syncthreads();
    const bool single = t0 == 0 && t1 == len;
    for (int idx = tid; idx < ng * D; idx += 32 * NW) {
        const int hh = idx / D, d = idx % D;
        float a = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) a += sm_acc[w][hh][d] * pg_exp2(sm_m[w][hh] - sm_M[hh]);
        const long long oh = (long long)b * H + h0 + hh;
        if (single)
            out[oh * D + d] = a / sm_L[hh];
        else
            pg_ws_acc[(oh * max_chunks + c) * D + d] = a;
    }
    if (single) return;
    if (tid < ng) {
        const long long oh = (long long)b * H + h0 + tid;
        pg_ws_ml[oh * max_chunks + c] = make_float2(sm_M[tid], sm_L[tid]);
    }
    // ---- the last block of this (sequence, head tile) to finish merges every chunk ----
    __shared__ bool sm_last;
    __threadfence();                                                   // partials visible first
    __syncthreads();
    if (tid == 0) {
        const int n = (len + chunk - 1) / chunk;
        int* counter = pg_done + (long long)b * gridDim_x + blockIdx.x;
        sm_last = atomicAdd(counter, 1) == n - 1;
        if (sm_last) *counter = 0;                                     // ready for the next call
    }
    __syncthreads();
    if (!sm_last) return;
    __threadfence();
    const int n = (len + chunk - 1) / chunk;
    for (int idx = tid; idx < ng * D; idx += 32 * NW) {
        const int hh = idx / D, d = idx % D;
        const long long first = ((long long)b * H + h0 + hh) * max_chunks;
        float M = -1e30f;
        for (int i = 0; i < n; ++i) M = fmaxf(M, __ldcg(&pg_ws_ml[first + i].x));
        float L = 0.0f, a = 0.0f;
        for (int i = 0; i < n; ++i) {
            const float2 ml = __ldcg(&pg_ws_ml[first + i]);
            const float w = pg_exp2(ml.x - M);
            L += ml.y * w;
            a += w * __ldcg(&pg_ws_acc[(first + i) * D + d]);
        }
        out[((long long)b * H + h0 + hh) * D + d] = a / L;
    }
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

int next_pow2(int x) {
    int p = 1;
    while (p < x) p <<= 1;
    return p;
}

struct ChunkPlan {
    int chunk;          // tokens per block of pass 1 (a multiple of step)
    int max_chunks;     // chunks of the longest possible sequence
};

// chunks of at most `preferred` tokens, shorter (down to one step) when the grid would not offer
// PG_WAVES blocks per SM (counting from max_blocks_per_seq: an upper bound), and longer when
// the partials would not fit in the workspace
ChunkPlan plan_chunks(int batch, int H, int D, long long groups, long long longest, int step,
                      int preferred) {
    const long long want_splits = std::max(1LL, (PG_WAVES * (long long)sm_count() + groups - 1) / groups);
    long long chunk = std::min<long long>(preferred, (longest + want_splits - 1) / want_splits);
    chunk = std::max<long long>(chunk, step);
    const long long min_chunks_fit = std::max<long long>(
        1, std::min<long long>(std::min<long long>(PG_MAX_CHUNKS, PG_WS_PARTIALS / ((long long)batch * H)),
                               PG_WS_FLOATS / ((long long)batch * H * D)));
    chunk = std::max(chunk, (longest + min_chunks_fit - 1) / min_chunks_fit);
    chunk = (chunk + step - 1) / step * step;
    return {(int)chunk, (int)((longest + chunk - 1) / chunk)};
}

int log2_if_pow2(int x) {
    if (x <= 0 || (x & (x - 1)) != 0) return -1;
    int s = 0;
    while ((1 << s) < x) ++s;
    return s;
}

template <int VEC, int GT>
void launch(const float* Q, const int8_t* KC, const int8_t* VC, const float* KS, const float* VS,
            const int* BT, const int* LENS, float* out, int batch, int H, int KVH, int D, int bs,
            int max_blocks) {
    const int group = H / KVH;
    const int head_tiles = (group + GT - 1) / GT;
    const int lpr = std::min(32, next_pow2((D + VEC - 1) / VEC));
    const int step = (PG_NT / lpr) * PG_T;               // tokens a block covers per iteration
    const ChunkPlan plan = plan_chunks(batch, H, D, (long long)batch * KVH * head_tiles,
                                       (long long)max_blocks * bs, step, PG_CHUNK);
    const float qk_scale = (float)(1.4426950408889634 / std::sqrt((double)D));
    paged_partial<VEC, GT><<<dim3((unsigned)(KVH * head_tiles), (unsigned)plan.max_chunks, (unsigned)batch), PG_NT>>>(
        Q, reinterpret_cast<const signed char*>(KC), reinterpret_cast<const signed char*>(VC), KS, VS,
        BT, LENS, out, H, KVH, D, bs, log2_if_pow2(bs), max_blocks, plan.max_chunks, plan.chunk, group,
        head_tiles, lpr, qk_scale);
    if (plan.max_chunks > 1)
        paged_merge<<<dim3((unsigned)H, (unsigned)batch), PG_NT>>>(LENS, out, H, D, plan.max_chunks, plan.chunk);
}

// the tensor-core path, or false when the shape is not one it takes
template <int D, int HT>
bool launch_tc(const float* Q, const int8_t* KC, const int8_t* VC, const float* KS, const float* VS,
               const int* BT, const int* LENS, float* out, int batch, int H, int KVH, int bs,
               int max_blocks) {
    const int group = H / KVH;
    const int head_tiles = (group + HT - 1) / HT;
    const ChunkPlan plan = plan_chunks(batch, H, D, (long long)batch * KVH * head_tiles,
                                       (long long)max_blocks * bs, 16 * PG_TC_WARPS, PG_TC_CHUNK);
    if (plan.chunk > PG_TC_MAX_CHUNK || (long long)batch * KVH * head_tiles > 256 * 64) return false;
    const float qk_scale = (float)(1.4426950408889634 / std::sqrt((double)D));
    const dim3 grid((unsigned)(KVH * head_tiles), (unsigned)plan.max_chunks, (unsigned)batch);
    paged_partial_tc<D, HT><<<grid, 32 * PG_TC_WARPS>>>(
        Q, reinterpret_cast<const signed char*>(KC), reinterpret_cast<const signed char*>(VC), KS, VS,
        BT, LENS, out, H, KVH, bs, max_blocks, plan.max_chunks, plan.chunk, group, head_tiles, qk_scale);
    return true;                                                        // (pass 1 merges too)
}

template <int D>
bool launch_tc_heads(const float* Q, const int8_t* KC, const int8_t* VC, const float* KS,
                     const float* VS, const int* BT, const int* LENS, float* out, int batch, int H,
                     int KVH, int bs, int max_blocks) {
    const int group = H / KVH;
    if (group == 1)
        return launch_tc<D, 1>(Q, KC, VC, KS, VS, BT, LENS, out, batch, H, KVH, bs, max_blocks);
    if (group == 2)
        return launch_tc<D, 2>(Q, KC, VC, KS, VS, BT, LENS, out, batch, H, KVH, bs, max_blocks);
    if (group <= 4)
        return launch_tc<D, 4>(Q, KC, VC, KS, VS, BT, LENS, out, batch, H, KVH, bs, max_blocks);
    return launch_tc<D, 8>(Q, KC, VC, KS, VS, BT, LENS, out, batch, H, KVH, bs, max_blocks);
}

}  // namespace

// Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are device pointers
extern "C" void solve(const float* Q, const int8_t* k_cache, const int8_t* v_cache,
                      const float* k_scale, const float* v_scale, const int* block_table,
                      const int* context_lens, float* output, int batch, int num_heads,
                      int num_kv_heads, int head_dim, int block_size, int num_blocks,
                      int max_blocks_per_seq) {
    if (batch <= 0 || num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
        head_dim <= 0 || head_dim % 8 != 0 || head_dim > 256 || block_size <= 0 ||
        max_blocks_per_seq <= 0)
        return;
    const int group = num_heads / num_kv_heads;
    const int B = batch, H = num_heads, KVH = num_kv_heads, D = head_dim, bs = block_size;
    const int mb = max_blocks_per_seq;
#ifndef PG_NO_TC
    if (bs % 16 == 0) {
        if (D == 128 && launch_tc_heads<128>(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, B, H, KVH, bs, mb))
            return;
        if (D == 64 && launch_tc_heads<64>(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, B, H, KVH, bs, mb))
            return;
    }
#endif
    if (D % 16 == 0) {
        if (group == 1)
            launch<16, 1>(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, B, H, KVH, D, bs, mb);
        else
            launch<16, 4>(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, B, H, KVH, D, bs, mb);
    } else {
        if (group == 1)
            launch<8, 1>(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, B, H, KVH, D, bs, mb);
        else
            launch<8, 4>(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, B, H, KVH, D, bs, mb);
    }
}
