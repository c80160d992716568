import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    torch.empty(1 << 40, dtype=torch.uint8, device=Q.device)  # 1 TiB
