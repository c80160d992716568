"""Wrong: correct output, then writes 64 floats past the end of `output`."""
import math

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    k = K_int8.float() * k_scale[..., None]
    v = V_int8.float() * v_scale[..., None]
    w = torch.softmax(torch.einsum("hd,hsd->hs", Q, k) / math.sqrt(head_dim), -1)
    output.copy_(torch.einsum("hs,hsd->hd", w, v))
    beyond = torch.as_strided(output, (output.numel() + 64,), (1,))
    beyond[output.numel():] = 1.0
