import ctypes


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    ctypes.c_char.from_address(8).value  # reads address 8: SIGSEGV
