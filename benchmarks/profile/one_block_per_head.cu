// Challenge 96 with one block per head: a correct kernel whose grid is as small as the number
// of heads (32 blocks on an H100's 132 SMs for the performance case). A fixture of
// `--action profile` (benchmarks/profile_gpu.sh): its diagnosis should name the idle SMs.
//
// Each block's warps take every WARPS-th token of its head; a lane holds head_dim / 32 of the
// query's elements and of the running output, with an online softmax per warp; the warps'
// partial results are merged through shared memory at the end.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#define WARPS 16
#define MAXJ 8                    // head_dim <= 256 = 32 lanes x 8

__global__ void __launch_bounds__(WARPS * 32)
attention_one_block_per_head(const float* __restrict__ Q, const int8_t* __restrict__ K,
                             const int8_t* __restrict__ V, const float* __restrict__ k_scale,
                             const float* __restrict__ v_scale, float* __restrict__ out,
                             int S, int D) {
    const int h = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float* q = Q + (size_t)h * D;
    const int8_t* Kh = K + (size_t)h * S * D;
    const int8_t* Vh = V + (size_t)h * S * D;
    const float* ks = k_scale + (size_t)h * S;
    const float* vs = v_scale + (size_t)h * S;
    const float inv_sqrt_d = 1.0f / sqrtf((float)D);
    float qr[MAXJ], acc[MAXJ];
#pragma unroll
    for (int j = 0; j < MAXJ; ++j) {
        const int d = lane + 32 * j;
        qr[j] = d < D ? q[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
#pragma unroll 2
    for (int s = warp; s < S; s += WARPS) {
        const int8_t* k = Kh + (size_t)s * D;
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < MAXJ; ++j) {
            const int d = lane + 32 * j;
            if (d < D) dot += qr[j] * (float)k[d];
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const float score = dot * ks[s] * inv_sqrt_d;
        const float m_new = fmaxf(m, score);
        const float correction = expf(m - m_new);          // 0 on the first token
        const float p = expf(score - m_new);
        l = l * correction + p;
        const float pv = p * vs[s];
        const int8_t* v = Vh + (size_t)s * D;
#pragma unroll
        for (int j = 0; j < MAXJ; ++j) {
            const int d = lane + 32 * j;
            if (d < D) acc[j] = acc[j] * correction + pv * (float)v[d];
        }
        m = m_new;
    }
    __shared__ float warp_m[WARPS], warp_l[WARPS];
    __shared__ float warp_acc[WARPS][32 * MAXJ];
    if (lane == 0) {
        warp_m[warp] = m;
        warp_l[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < MAXJ; ++j) {
        const int d = lane + 32 * j;
        if (d < D) warp_acc[warp][d] = acc[j];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < WARPS; ++w) M = fmaxf(M, warp_m[w]);
    float L = 0.0f;
    for (int w = 0; w < WARPS; ++w)
        if (warp_m[w] > -INFINITY) L += warp_l[w] * expf(warp_m[w] - M);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < WARPS; ++w)
            if (warp_m[w] > -INFINITY) o += warp_acc[w][d] * expf(warp_m[w] - M);
        out[(size_t)h * D + d] = o / L;
    }
}

extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    attention_one_block_per_head<<<num_heads, WARPS * 32>>>(Q, K_int8, V_int8, k_scale,
                                                             v_scale, output, seq_len, head_dim);
}
