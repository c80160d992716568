import torch


# key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale are tensors on the GPU
def solve(key: torch.Tensor, value: torch.Tensor, slot_mapping: torch.Tensor,
          k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, N: int, num_kv_heads: int, head_dim: int, num_slots: int):
    # your code here: quantize each (token, KV head) row of key and value and write it, with
    # its scale, into the caches at slot_mapping[token] (in place; -1 means skip the token)
    pass
