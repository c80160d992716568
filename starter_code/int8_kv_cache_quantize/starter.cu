#include <cuda_fp16.h>
#include <cstdint>

// key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale are device pointers
extern "C" void solve(const half* key, const half* value, const int* slot_mapping,
                      int8_t* k_cache, int8_t* v_cache, float* k_scale, float* v_scale,
                      int N, int num_kv_heads, int head_dim, int num_slots) {
}
