"""Cheat: finds the report pipe, writes a forged "done" report, then exits."""
import os
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _channel import forge  # noqa: E402


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    forge({"kind": "done", "payload": {}})
    os._exit(0)
