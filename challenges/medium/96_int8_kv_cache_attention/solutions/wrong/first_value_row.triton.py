"""Wrong: a Triton kernel that copies the first value row of each head to the output."""
import torch
import triton
import triton.language as tl


@triton.jit
def _first_row(V, VS, OUT, seq_len, head_dim, BLOCK_D: tl.constexpr):
    h = tl.program_id(0)
    d = tl.arange(0, BLOCK_D)
    m = d < head_dim
    v = tl.load(V + h * seq_len * head_dim + d, mask=m, other=0).to(tl.float32)
    s = tl.load(VS + h * seq_len)
    tl.store(OUT + h * head_dim + d, v * s, mask=m)


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    _first_row[(num_heads,)](V_int8, v_scale, output, seq_len, head_dim,
                             BLOCK_D=triton.next_power_of_2(head_dim))
