"""Cheat: remembers the answer per output pointer and replays it."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402

_answers = {}


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    key = (output.data_ptr(), tuple(output.shape))
    if key not in _answers:
        _answers[key] = attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim)
    output.copy_(_answers[key])
