import torch
import triton
import triton.language as tl


@triton.jit
def paged_attention_kernel(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens,
                           output, num_heads, num_kv_heads, head_dim, block_size,
                           max_blocks_per_seq, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # one program per (sequence, query head) (tl.program_id(0), tl.program_id(1)). The query
    # head reads KV head query_head // (num_heads // num_kv_heads); token t of the sequence
    # (t < context_lens[seq]) is row t % block_size of cache block
    # block_table[seq, t // block_size] (see challenge.html)
    pass


# Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output are tensors on the GPU
def solve(Q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, block_table: torch.Tensor, context_lens: torch.Tensor,
          output: torch.Tensor, batch: int, num_heads: int, num_kv_heads: int, head_dim: int,
          block_size: int, num_blocks: int, max_blocks_per_seq: int):
    if batch == 0:
        return
    BLOCK_N = 64                                  # tokens per step
    BLOCK_D = triton.next_power_of_2(head_dim)    # the whole head dimension
    grid = (batch, num_heads)
    paged_attention_kernel[grid](Q, k_cache, v_cache, k_scale, v_scale, block_table,
                                 context_lens, output, num_heads, num_kv_heads, head_dim,
                                 block_size, max_blocks_per_seq, BLOCK_N=BLOCK_N,
                                 BLOCK_D=BLOCK_D)
