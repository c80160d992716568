#include <cstdint>
#include <cuda_runtime.h>

// One block per head (blockIdx.x): the head's scores against every dequantized key, their
// softmax, and the weighted sum of the dequantized values, written to output (challenge.html).
__global__ void attention_kernel(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                                 const float* k_scale, const float* v_scale, float* output,
                                 int seq_len, int head_dim) {
    // your code here
}

// Q, K_int8, V_int8, k_scale, v_scale, output are device pointers
extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    int threadsPerBlock = 128;
    attention_kernel<<<num_heads, threadsPerBlock>>>(Q, K_int8, V_int8, k_scale, v_scale,
                                                     output, seq_len, head_dim);
}
