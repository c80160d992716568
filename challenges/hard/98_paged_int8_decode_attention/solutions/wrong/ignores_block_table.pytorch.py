"""WRONG on purpose (tests expect wrong_answer): a decode that ignores the block table. It takes
sequence b's j-th block to be block b * max_blocks_per_seq + j of the pool (mod num_blocks), as
if each sequence's blocks were stored one after another, instead of block_table[b, j]: right
only where the table happens to say so. Everything else is 98's attention, done plainly."""

import math

import torch


def solve(Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, batch,
          num_heads, num_kv_heads, head_dim, block_size, num_blocks, max_blocks_per_seq):
    group = num_heads // num_kv_heads
    for b in range(batch):
        n = int(context_lens[b])
        used = torch.arange(-(-n // block_size), device=Q.device)
        blocks = (b * max_blocks_per_seq + used) % num_blocks       # the mistake
        k = k_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:n].float()
        v = v_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:n].float()
        ks = k_scale[blocks].reshape(-1, num_kv_heads)[:n].T          # [kv_heads, n]
        vs = v_scale[blocks].reshape(-1, num_kv_heads)[:n].T
        q = Q[b].reshape(num_kv_heads, group, head_dim)
        scores = torch.einsum("kgd,skd->kgs", q, k) * (ks[:, None, :] / math.sqrt(head_dim))
        weights = torch.softmax(scores, dim=-1) * vs[:, None, :]
        output[b] = torch.einsum("kgs,skd->kgd", weights, v).reshape(num_heads, head_dim)
