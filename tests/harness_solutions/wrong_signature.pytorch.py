def solve(Q, K, V, k_scale, v_scale, output, num_heads, seq_len):
    pass
