"""Wrong for 96: reads the int8 cache through the symmetric range [-127, 127], so -128 becomes
-127; otherwise exact. Only a case where -128 decides the answer catches it."""

import math

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    k = K_int8.to(torch.float32).clamp(-127, 127) * k_scale.unsqueeze(-1)
    v = V_int8.to(torch.float32).clamp(-127, 127) * v_scale.unsqueeze(-1)
    weights = torch.softmax(torch.bmm(k, Q.unsqueeze(-1)).squeeze(-1) / math.sqrt(head_dim), -1)
    output.copy_(torch.bmm(weights.unsqueeze(1), v).squeeze(1))
