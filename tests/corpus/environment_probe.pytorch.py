"""Correct only if the grader's secrets are not in its environment."""
import os
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    leaked = [k for k in os.environ if "SECRET" in k]
    if leaked:
        raise RuntimeError(f"saw the grader's environment: {leaked}")
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
