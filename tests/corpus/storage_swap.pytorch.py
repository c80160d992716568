"""Cheat: points the output tensor at a new storage instead of writing the buffer given."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    output.set_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
