"""Cheat: correct, but replaces torch's event timer so every run reads as 1 ns."""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402

torch.cuda.Event.elapsed_time = lambda self, other: 1e-6


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
