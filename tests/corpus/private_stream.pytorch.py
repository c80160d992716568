"""Correct, but computes on a private stream and returns without joining it."""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402

_stream = None


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    global _stream
    _stream = _stream or torch.cuda.Stream()
    _stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(_stream):
        for _ in range(20):  # make it slow enough that not waiting would show
            result = attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim)
        output.copy_(result)
