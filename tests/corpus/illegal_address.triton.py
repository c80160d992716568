"""A Triton kernel that stores far outside any allocation: an illegal memory access."""
import triton
import triton.language as tl


@triton.jit
def _wild_store(OUT):
    tl.store(OUT + (1 << 40), 1.0)


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    _wild_store[(1,)](output)
