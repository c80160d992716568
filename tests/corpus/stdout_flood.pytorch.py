"""Correct, but prints about 40 MB first."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402

LINE = "x" * 1023 + "\n"


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    for _ in range(4_000):
        sys.stdout.write(LINE * 10)
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
