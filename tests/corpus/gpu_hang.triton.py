"""A Triton kernel that never finishes: it waits for a flag nobody sets."""
import torch
import triton
import triton.language as tl


@triton.jit
def _spin(FLAG, OUT):
    flag = tl.load(FLAG, volatile=True)
    while flag == 0:
        flag = tl.load(FLAG, volatile=True)
    tl.store(OUT, 0.0)


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    flag = torch.zeros(1, dtype=torch.int32, device=Q.device)
    _spin[(1,)](flag, output)
