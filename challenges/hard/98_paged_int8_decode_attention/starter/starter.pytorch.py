import torch


# Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are tensors on the GPU
def solve(Q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, block_table: torch.Tensor, context_lens: torch.Tensor,
          output: torch.Tensor, batch: int, num_heads: int, num_kv_heads: int, head_dim: int,
          block_size: int, num_blocks: int, max_blocks_per_seq: int):
    # your code here: for each sequence, gather its tokens' K and V rows through block_table,
    # dequantize them, attend with each query head, and write the result into output (in place)
    pass
