// Writes far outside its buffers: the kernel dies with cudaErrorIllegalAddress, which poisons
// the CUDA context (runtime_error; the next grading needs a fresh process).
#include <cstdint>

__global__ void scribble(float* out) { out[(1ll << 40) + threadIdx.x] = 1.0f; }

extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    scribble<<<1, 32>>>(output);
}
