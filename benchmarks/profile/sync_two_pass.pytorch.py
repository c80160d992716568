"""Challenge 96 in two passes per head, reading each head's maximum and sum back to the host
(``.item()``) and synchronizing the device between them. Correct, and host-bound: a fixture of
`--action profile` (benchmarks/profile_gpu.sh), whose diagnosis should name the waits."""

import math

import torch


def solve(Q: torch.Tensor, K_int8: torch.Tensor, V_int8: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, output: torch.Tensor, num_heads: int, seq_len: int, head_dim: int):
    inv_sqrt_d = 1.0 / math.sqrt(head_dim)
    for h in range(num_heads):
        scores = torch.mv(K_int8[h].to(torch.float32), Q[h]) * (k_scale[h] * inv_sqrt_d)
        top = scores.max().item()                    # pass 1: the maximum, on the host
        if Q.is_cuda:
            torch.cuda.synchronize()
        weights = torch.exp(scores - top)
        total = weights.sum().item()                 # pass 2: the sum, on the host
        weights = weights * (v_scale[h] / total)
        torch.mv(V_int8[h].to(torch.float32).t(), weights, out=output[h])
