// Launches with 2048 threads per block (the limit is 1024): the launch fails (CUDA 12 drivers
// say cudaErrorInvalidConfiguration, CUDA 13 cudaErrorInvalidValue) and the kernel never runs
// (tests expect runtime_error).
#include <cstdint>

__global__ void fill(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 0.0f;
}

extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    fill<<<1, 2048>>>(output, num_heads * head_dim);
}
