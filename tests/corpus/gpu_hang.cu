// A kernel that never ends (the value it waits for is never written): only the time limit
// stops it.
#include <cstdint>

__global__ void spin(volatile int* flag) {
    while (*flag != 0x1badf00d) {
    }
}

extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    // the output is poisoned with NaN, never this bit pattern
    spin<<<1, 1>>>(reinterpret_cast<volatile int*>(output));
}
