"""A correct solve for challenge 96, imported by corpus entries that misbehave around it."""
import math

import torch


def attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim):
    k = K_int8.float() * k_scale[..., None]
    v = V_int8.float() * v_scale[..., None]
    w = torch.softmax(torch.einsum("hd,hsd->hs", Q, k) / math.sqrt(head_dim), -1)
    return torch.einsum("hs,hsd->hd", w, v)
