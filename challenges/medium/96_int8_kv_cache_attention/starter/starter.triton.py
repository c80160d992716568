import torch
import triton
import triton.language as tl


@triton.jit
def attention_kernel(Q, K_int8, V_int8, k_scale, v_scale, output, seq_len, head_dim,
                     BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # one program per head (tl.program_id(0)): its scores against every dequantized key,
    # their softmax, and the weighted sum of the dequantized values (see challenge.html)
    pass


# Q, K_int8, V_int8, k_scale, v_scale, output are tensors on the GPU
def solve(Q: torch.Tensor, K_int8: torch.Tensor, V_int8: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, output: torch.Tensor, num_heads: int, seq_len: int, head_dim: int):
    BLOCK_N = 64                                  # tokens per step
    BLOCK_D = triton.next_power_of_2(head_dim)    # the whole head dimension
    grid = (num_heads,)
    attention_kernel[grid](Q, K_int8, V_int8, k_scale, v_scale, output, seq_len, head_dim,
                           BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
