"""Wrong: correct output, but dequantizes the scales in place (modifies an input)."""
import math

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    k_scale.mul_(1.0 / math.sqrt(head_dim))
    k = K_int8.float() * k_scale[..., None]
    v = V_int8.float() * v_scale[..., None]
    output.copy_(torch.einsum("hs,hsd->hd", torch.softmax(torch.einsum("hd,hsd->hs", Q, k), -1), v))
