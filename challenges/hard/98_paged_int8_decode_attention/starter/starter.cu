#include <cuda_runtime.h>
#include <cstdint>

// One block per (sequence, query head) (blockIdx.x, blockIdx.y). The query head reads KV head
// query_head / (num_heads / num_kv_heads); token t of the sequence (t < context_lens[seq]) is row
// t % block_size of cache block block_table[seq * max_blocks_per_seq + t / block_size]
// (challenge.html).
__global__ void paged_attention_kernel(const float* Q, const int8_t* k_cache,
                                       const int8_t* v_cache, const float* k_scale,
                                       const float* v_scale, const int* block_table,
                                       const int* context_lens, float* output, int num_heads,
                                       int num_kv_heads, int head_dim, int block_size,
                                       int max_blocks_per_seq) {
    // your code here
}

// Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are device pointers
extern "C" void solve(const float* Q, const int8_t* k_cache, const int8_t* v_cache,
                      const float* k_scale, const float* v_scale, const int* block_table,
                      const int* context_lens, float* output, int batch, int num_heads,
                      int num_kv_heads, int head_dim, int block_size, int num_blocks,
                      int max_blocks_per_seq) {
    if (batch == 0) return;
    dim3 grid(batch, num_heads);
    int threadsPerBlock = 128;
    paged_attention_kernel<<<grid, threadsPerBlock>>>(Q, k_cache, v_cache, k_scale, v_scale,
                                                      block_table, context_lens, output,
                                                      num_heads, num_kv_heads, head_dim,
                                                      block_size, max_blocks_per_seq);
}
