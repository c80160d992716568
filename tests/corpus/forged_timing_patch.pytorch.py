"""Cheat: a correct solution that finds the report channel through the garbage collector and
rewrites its timing report (every time divided by 70)."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402
from _forgers import patch_channel  # noqa: E402


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
    patch_channel()
