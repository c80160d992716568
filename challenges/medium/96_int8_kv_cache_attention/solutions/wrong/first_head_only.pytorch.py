"""Wrong: writes only head 0, leaving the rest of the output unwritten."""
import math

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    k = K_int8[0].float() * k_scale[0, :, None]
    v = V_int8[0].float() * v_scale[0, :, None]
    w = torch.softmax(k @ Q[0] / math.sqrt(head_dim), dim=-1)
    output[0].copy_(w @ v)
