"""Cheat: searches the garbage collector for a finished answer of the right shape."""
import gc

import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    for obj in gc.get_objects():
        if (isinstance(obj, torch.Tensor) and obj is not output and obj.shape == output.shape
                and obj.dtype == output.dtype and obj.data_ptr() != output.data_ptr()
                and torch.isfinite(obj).all() and obj.abs().sum() > 0
                and obj.data_ptr() != Q.data_ptr()):
            output.copy_(obj)
            return
