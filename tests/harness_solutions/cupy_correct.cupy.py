"""A simple, correct CuPy solution of challenge 96 with a RawKernel: one block per head, the
same algorithm as cuda_correct.cu (speed is not the point)."""

import cupy as cp
import numpy as np

THREADS = 256  # >= the largest head_dim

SOURCE = r"""
#define THREADS 256

__device__ float block_reduce(float value, float* scratch, bool take_max) {
    for (int offset = 16; offset > 0; offset /= 2) {
        float other = __shfl_down_sync(0xffffffffu, value, offset);
        value = take_max ? fmaxf(value, other) : value + other;
    }
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = scratch[0];
        for (int w = 1; w < THREADS / 32; ++w)
            total = take_max ? fmaxf(total, scratch[w]) : total + scratch[w];
        scratch[0] = total;
    }
    __syncthreads();
    float result = scratch[0];
    __syncthreads();
    return result;
}

__device__ float score(const float* q, const signed char* k_row, float k_scale, int head_dim,
                       float inv_sqrt_d) {
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += q[d] * (float)k_row[d];
    return dot * k_scale * inv_sqrt_d;
}

extern "C" __global__ void attention(const float* Q, const signed char* K, const signed char* V,
                                     const float* k_scale, const float* v_scale, float* out,
                                     int seq_len, int head_dim) {
    __shared__ float q[THREADS];
    __shared__ float weight[THREADS];
    __shared__ float scratch[THREADS / 32];
    const int head = blockIdx.x, tid = threadIdx.x;
    const signed char* k_head = K + (long long)head * seq_len * head_dim;
    const signed char* v_head = V + (long long)head * seq_len * head_dim;
    const float* ks = k_scale + (long long)head * seq_len;
    const float* vs = v_scale + (long long)head * seq_len;
    const float inv_sqrt_d = rsqrtf((float)head_dim);
    if (tid < head_dim) q[tid] = Q[head * head_dim + tid];
    __syncthreads();

    float local_max = -3.402823466e38f;
    for (int t = tid; t < seq_len; t += THREADS)
        local_max = fmaxf(local_max, score(q, k_head + (long long)t * head_dim, ks[t], head_dim,
                                           inv_sqrt_d));
    const float max_score = block_reduce(local_max, scratch, true);

    float local_sum = 0.0f, acc = 0.0f;
    for (int start = 0; start < seq_len; start += THREADS) {
        int t = start + tid;
        float p = 0.0f;
        if (t < seq_len)
            p = expf(score(q, k_head + (long long)t * head_dim, ks[t], head_dim, inv_sqrt_d)
                     - max_score);
        local_sum += p;
        weight[tid] = (t < seq_len) ? p * vs[t] : 0.0f;
        __syncthreads();
        int tile = min(THREADS, seq_len - start);
        if (tid < head_dim)
            for (int j = 0; j < tile; ++j)
                acc += weight[j] * (float)v_head[(long long)(start + j) * head_dim + tid];
        __syncthreads();
    }
    const float total = block_reduce(local_sum, scratch, false);
    if (tid < head_dim) out[head * head_dim + tid] = acc / total;
}
"""

_kernel = cp.RawKernel(SOURCE, "attention")


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    _kernel((num_heads,), (THREADS,),
            (Q, K_int8, V_int8, k_scale, v_scale, output, np.int32(seq_len), np.int32(head_dim)))
