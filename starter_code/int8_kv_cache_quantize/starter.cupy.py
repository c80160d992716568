import cupy as cp


# key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale are CuPy arrays on the GPU
def solve(key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale,
          N: int, num_kv_heads: int, head_dim: int, num_slots: int):
    pass
