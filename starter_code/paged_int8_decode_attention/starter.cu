#include <cuda_runtime.h>
#include <cstdint>

// Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are device pointers
extern "C" void solve(const float* Q, const int8_t* k_cache, const int8_t* v_cache,
                      const float* k_scale, const float* v_scale, const int* block_table,
                      const int* context_lens, float* output, int batch, int num_heads,
                      int num_kv_heads, int head_dim, int block_size, int num_blocks,
                      int max_blocks_per_seq) {
}
