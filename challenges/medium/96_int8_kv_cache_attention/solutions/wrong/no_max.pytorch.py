"""Wrong: softmax without subtracting the max, which overflows on large logits."""
import math

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    k = K_int8.float() * k_scale[..., None]
    v = V_int8.float() * v_scale[..., None]
    e = torch.exp(torch.einsum("hd,hsd->hs", Q, k) / math.sqrt(head_dim))
    output.copy_(torch.einsum("hs,hsd->hd", e / e.sum(-1, keepdim=True), v))
