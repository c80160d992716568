"""WRONG on purpose (tests expect wrong_answer): zeroes the whole cache and scale pool before
writing the new rows; the slots not named in slot_mapping must keep what they held."""

import torch


def solve(key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale, N, num_kv_heads, head_dim,
          num_slots):
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    for x, c, s in ((key, k_cache, k_scale), (value, v_cache, v_scale)):
        c.zero_()
        s.zero_()
        x = x[keep].float()
        scale = x.abs().amax(-1) / 127
        c[slots] = torch.round(x / torch.where(scale > 0, scale, 1.0)[..., None]).to(torch.int8)
        s[slots] = scale
