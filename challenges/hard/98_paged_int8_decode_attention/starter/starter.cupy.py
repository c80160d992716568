import cupy as cp

# One block per (sequence, query head) (blockIdx.x, blockIdx.y). The query head reads KV head
# query_head / (num_heads / num_kv_heads); token t of the sequence (t < context_lens[seq]) is row
# t % block_size of cache block block_table[seq * max_blocks_per_seq + t / block_size]
# (challenge.html).
paged_attention_kernel = cp.RawKernel(r"""
extern "C" __global__
void paged_attention_kernel(const float* Q, const signed char* k_cache,
                            const signed char* v_cache, const float* k_scale,
                            const float* v_scale, const int* block_table,
                            const int* context_lens, float* output, int num_heads,
                            int num_kv_heads, int head_dim, int block_size,
                            int max_blocks_per_seq) {
    // your code here
}
""", "paged_attention_kernel")


# Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are CuPy arrays on the GPU
def solve(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output,
          batch: int, num_heads: int, num_kv_heads: int, head_dim: int, block_size: int,
          num_blocks: int, max_blocks_per_seq: int):
    if batch == 0:
        return
    threads_per_block = 128
    paged_attention_kernel((batch, num_heads), (threads_per_block,),
                           (Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens,
                            output, cp.int32(num_heads), cp.int32(num_kv_heads),
                            cp.int32(head_dim), cp.int32(block_size),
                            cp.int32(max_blocks_per_seq)))
