"""Wrong: uses v_scale for the keys and k_scale for the values."""
import math

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    k = K_int8.float() * v_scale[..., None]
    v = V_int8.float() * k_scale[..., None]
    w = torch.softmax(torch.einsum("hd,hsd->hs", Q, k) / math.sqrt(head_dim), dim=-1)
    output.copy_(torch.einsum("hs,hsd->hd", w, v))
