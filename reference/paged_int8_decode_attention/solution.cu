// Paged INT8 decode attention with grouped-query heads (challenge 98): split-K, two kernels.
//
// Pass 1, block (kv head x head tile, chunk, sequence): streams tokens [chunk * CH, ...) of one
// sequence for one KV head and serves up to GT of that KV head's query heads at once, so each
// K/V byte is read once per KV head (GT = 4 covers the common GQA ratio 4 in one tile; larger
// groups take several tiles, whose blocks run side by side and share the bytes through L2).
// The blocks of one chunk's KV heads are adjacent in launch order, so the 32-byte sectors of
// scales and the block-table entries they share are read from DRAM once.
//
// Each group of LPR lanes owns one token row at a time; each lane owns VEC (16 or 8) dims of
// it and reads them with one 16- or 8-byte load. Token p of sequence b is at physical row
//     (block_table[b][p / block_size] * block_size + p % block_size) * num_kv_heads + kv_head.
// Scales are factored out of the dot products (log2 domain):
//     score = k_scale * (q . k_int8) * log2(e) / sqrt(d),   acc += exp2(score - m) * v_scale * v_int8
// int8 -> float is one byte-permute and one add ("magic number": the byte, biased by 128, becomes
// the low mantissa byte of 2^23) instead of a conversion instruction, which on Hopper runs at a
// fraction of the FMA rate. Each lane keeps a running max, sum and accumulator per query head
// (rescaled only when the max grows); the block merges its lanes at the end. A sequence that
// fits in one chunk is written straight to the output; otherwise pass 2, block (head,
// sequence), merges the chunks by log-sum-exp. No host synchronisation (the grid is sized from
// max_blocks_per_seq, and blocks past a sequence's end exit at once), no allocation (the
// partials live in fixed device arrays; the chunk length grows when they would not fit).

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

template <int VEC, int GT>
void launch(const float* Q, const int8_t* KC, const int8_t* VC, const float* KS, const float* VS,
            const int* BT, const int* LENS, float* out, int batch, int H, int KVH, int D, int bs,
            int max_blocks) {
    const int group = H / KVH;
    const int head_tiles = (group + GT - 1) / GT;
    const int lpr = std::min(32, next_pow2((D + VEC - 1) / VEC));
    const int step = (PG_NT / lpr) * PG_T;               // tokens a block covers per iteration
    const long long longest = (long long)max_blocks * bs;
    // chunks of at most PG_CHUNK tokens, shorter (down to one iteration) when the grid would
    // not offer PG_WAVES blocks per SM (counting from max_blocks_per_seq: an upper bound), and
    // longer when the partials would not fit in the workspace
    const long long groups = (long long)batch * KVH * head_tiles;
    const long long want_splits = std::max(1LL, (PG_WAVES * (long long)sm_count() + groups - 1) / groups);
    long long chunk = std::min<long long>(PG_CHUNK, (longest + want_splits - 1) / want_splits);
    chunk = std::max<long long>(chunk, step);
    long long min_chunks_fit = std::max<long long>(
        1, std::min<long long>(std::min<long long>(PG_MAX_CHUNKS, PG_WS_PARTIALS / ((long long)batch * H)),
                               PG_WS_FLOATS / ((long long)batch * H * D)));
    chunk = std::max(chunk, (longest + min_chunks_fit - 1) / min_chunks_fit);
    chunk = (chunk + step - 1) / step * step;
    const int max_chunks = (int)((longest + chunk - 1) / chunk);
    const float qk_scale = (float)(1.4426950408889634 / std::sqrt((double)D));
    int bs_shift = -1;
    if ((bs & (bs - 1)) == 0)
        for (bs_shift = 0; (1 << bs_shift) < bs; ++bs_shift) {}
    paged_partial<VEC, GT><<<dim3((unsigned)(KVH * head_tiles), (unsigned)max_chunks, (unsigned)batch), PG_NT>>>(
        Q, reinterpret_cast<const signed char*>(KC), reinterpret_cast<const signed char*>(VC), KS, VS,
        BT, LENS, out, H, KVH, D, bs, bs_shift, max_blocks, max_chunks, (int)chunk, group, head_tiles, lpr,
        qk_scale);
    if (max_chunks > 1)
        paged_merge<<<dim3((unsigned)H, (unsigned)batch), PG_NT>>>(LENS, out, H, D, max_chunks, (int)chunk);
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
