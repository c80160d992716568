"""Cheat: a correct solution that swaps the report pipe for one of its own and relays every
line through a thread, dividing the reported times by 70."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402
from _forgers import swap_report_fd  # noqa: E402


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
    swap_report_fd()
