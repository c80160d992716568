"""WRONG on purpose (tests expect wrong_answer): reads the old rows through the symmetric range,
so an old -128 in a slot not named becomes -127; the new rows are right. Only a case whose pool
holds -128 outside the written slots catches it."""

import torch


def solve(key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale, N, num_kv_heads, head_dim,
          num_slots):
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    for x, c, s in ((key, k_cache, k_scale), (value, v_cache, v_scale)):
        c.clamp_(-127, 127)     # the old rows read through the symmetric range: -128 -> -127
        x = x[keep].float()
        scale = x.abs().amax(-1) / 127
        c[slots] = torch.round(x / torch.where(scale > 0, scale, 1.0)[..., None]).to(torch.int8)
        s[slots] = scale
