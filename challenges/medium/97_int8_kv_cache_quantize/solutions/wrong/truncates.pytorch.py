"""WRONG on purpose (tests expect wrong_answer): quantizes by truncating toward zero
(`.to(torch.int8)`) instead of rounding to nearest; scales and slots are right."""

import torch


def solve(key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale, N, num_kv_heads, head_dim,
          num_slots):
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    for x, c, s in ((key, k_cache, k_scale), (value, v_cache, v_scale)):
        x = x[keep].float()
        scale = x.abs().amax(-1) / 127
        c[slots] = (x / torch.where(scale > 0, scale, 1.0)[..., None]).to(torch.int8)
        s[slots] = scale
