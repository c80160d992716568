import cupy as cp


# Q, K_int8, V_int8, k_scale, v_scale, output are CuPy arrays on the GPU
def solve(Q: cp.ndarray, K_int8: cp.ndarray, V_int8: cp.ndarray, k_scale: cp.ndarray,
          v_scale: cp.ndarray, output: cp.ndarray, num_heads: int, seq_len: int, head_dim: int):
    pass
