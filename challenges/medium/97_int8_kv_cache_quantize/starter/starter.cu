#include <cuda_fp16.h>
#include <cstdint>

// One block per (token, KV head) row (blockIdx.x, blockIdx.y): skip the token when
// slot_mapping[token] is -1; otherwise the row's scale (max |x| / 127) and its rounded int8
// values go to that slot of the caches, for key and for value alike (challenge.html).
__global__ void quantize_kernel(const half* key, const half* value, const int* slot_mapping,
                                int8_t* k_cache, int8_t* v_cache, float* k_scale,
                                float* v_scale, int num_kv_heads, int head_dim) {
    // your code here
}

// key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale are device pointers
extern "C" void solve(const half* key, const half* value, const int* slot_mapping,
                      int8_t* k_cache, int8_t* v_cache, float* k_scale, float* v_scale,
                      int N, int num_kv_heads, int head_dim, int num_slots) {
    if (N == 0) return;
    dim3 grid(N, num_kv_heads);
    int threadsPerBlock = 128;
    quantize_kernel<<<grid, threadsPerBlock>>>(key, value, slot_mapping, k_cache, v_cache,
                                               k_scale, v_scale, num_kv_heads, head_dim);
}
