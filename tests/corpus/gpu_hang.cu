// A kernel that never ends (the flag is never set): only the time limit stops it.
#include <cstdint>

__global__ void spin(volatile int* flag) {
    while (*flag == 0) {
    }
}

extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    // the output is poisoned with NaN, whose bits are never 0
    spin<<<1, 1>>>(reinterpret_cast<volatile int*>(output));
}
