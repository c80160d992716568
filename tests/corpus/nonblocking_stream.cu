// Correct, but launches its kernel on a non-blocking stream of its own and returns without
// waiting for anything: the stream neither waits for the work queued before the call on the
// current stream (the grader's rewrite of the inputs) nor is joined before returning. The
// grader must detect it (timed "isolated": the device drained before and after each call) and
// accept it with a median that includes the kernel (issue 25). Challenge 96; the kernel is
// tests/harness_solutions/cuda_correct.cu's.
#include <cstdint>
#include <cmath>
#include <cuda_runtime.h>

constexpr int THREADS = 256;   // >= the largest head_dim (256)

__device__ float block_reduce(float value, float* scratch, bool take_max) {
    for (int offset = 16; offset > 0; offset /= 2) {
        float other = __shfl_down_sync(0xffffffffu, value, offset);
        value = take_max ? fmaxf(value, other) : value + other;
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) scratch[warp] = value;
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

__device__ float score(const float* q, const int8_t* k_row, float k_scale, int head_dim,
                       float inv_sqrt_d) {
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += q[d] * static_cast<float>(k_row[d]);
    return dot * k_scale * inv_sqrt_d;
}

__global__ void attention_kernel(const float* Q, const int8_t* K, const int8_t* V,
                                 const float* k_scale, const float* v_scale, float* out,
                                 int seq_len, int head_dim) {
    __shared__ float q[THREADS];
    __shared__ float weight[THREADS];
    __shared__ float scratch[THREADS / 32];
    const int head = blockIdx.x, tid = threadIdx.x;
    const int8_t* k_head = K + static_cast<size_t>(head) * seq_len * head_dim;
    const int8_t* v_head = V + static_cast<size_t>(head) * seq_len * head_dim;
    const float* ks = k_scale + static_cast<size_t>(head) * seq_len;
    const float* vs = v_scale + static_cast<size_t>(head) * seq_len;
    const float inv_sqrt_d = rsqrtf(static_cast<float>(head_dim));
    if (tid < head_dim) q[tid] = Q[head * head_dim + tid];
    __syncthreads();

    float local_max = -INFINITY;
    for (int t = tid; t < seq_len; t += THREADS)
        local_max = fmaxf(local_max, score(q, k_head + static_cast<size_t>(t) * head_dim, ks[t],
                                           head_dim, inv_sqrt_d));
    const float max_score = block_reduce(local_max, scratch, true);

    float local_sum = 0.0f, acc = 0.0f;
    for (int start = 0; start < seq_len; start += THREADS) {
        int t = start + tid;
        float p = 0.0f;
        if (t < seq_len)
            p = expf(score(q, k_head + static_cast<size_t>(t) * head_dim, ks[t], head_dim,
                           inv_sqrt_d) - max_score);
        local_sum += p;
        weight[tid] = (t < seq_len) ? p * vs[t] : 0.0f;
        __syncthreads();
        int tile = min(THREADS, seq_len - start);
        if (tid < head_dim)
            for (int j = 0; j < tile; ++j)
                acc += weight[j] * static_cast<float>(v_head[static_cast<size_t>(start + j) * head_dim + tid]);
        __syncthreads();
    }
    const float total = block_reduce(local_sum, scratch, false);
    if (tid < head_dim) out[head * head_dim + tid] = acc / total;
}

// Q, K_int8, V_int8, k_scale, v_scale, output are device pointers
extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    static cudaStream_t stream = nullptr;
    if (!stream) cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    attention_kernel<<<num_heads, THREADS, 0, stream>>>(Q, K_int8, V_int8, k_scale, v_scale,
                                                        output, seq_len, head_dim);
}
