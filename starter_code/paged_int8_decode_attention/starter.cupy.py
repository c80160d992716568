import cupy as cp


# Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are CuPy arrays on the GPU
def solve(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output,
          batch: int, num_heads: int, num_kv_heads: int, head_dim: int, block_size: int,
          num_blocks: int, max_blocks_per_seq: int):
    pass
