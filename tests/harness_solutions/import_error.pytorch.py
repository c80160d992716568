import flash_attn_not_installed_anywhere  # noqa: F401


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    pass
