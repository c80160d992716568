"""Paged INT8 decode attention in plain PyTorch: one padded batch, scales factored out.

Every sequence's block list is gathered into a padded [batch, tokens, kv_heads, head_dim] view
(tokens = the longest context), the query heads of each KV head are grouped so K and V are used
as they are stored (int8, converted once), scores get k_scale per token, positions past a
sequence's length are masked to -inf before the softmax, and v_scale folds into the weights.
Sequences are processed a few at a time so the float32 copy of the cache stays bounded.
"""

import math

import torch

MAX_TOKENS_PER_STEP = 1 << 16   # sequences * padded length converted to float32 at once


def solve(Q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, block_table: torch.Tensor, context_lens: torch.Tensor,
          output: torch.Tensor, batch: int, num_heads: int, num_kv_heads: int, head_dim: int,
          block_size: int, num_blocks: int, max_blocks_per_seq: int):
    group = num_heads // num_kv_heads
    lens = context_lens.long()
    longest = int(lens.max())
    used = -(-longest // block_size)                       # table columns anyone needs
    tokens = used * block_size
    step = max(1, MAX_TOKENS_PER_STEP // tokens)
    pos = torch.arange(tokens, device=Q.device)
    for b0 in range(0, batch, step):
        b1 = min(batch, b0 + step)
        # padding entries (past a sequence's last block) may hold anything: clamp them to a
        # valid block; the mask below drops whatever they point at
        blocks = block_table[b0:b1, :used].long().clamp(0, num_blocks - 1)     # [n, used]
        k = k_cache[blocks].reshape(b1 - b0, tokens, num_kv_heads, head_dim).float()
        v = v_cache[blocks].reshape(b1 - b0, tokens, num_kv_heads, head_dim).float()
        ks = k_scale[blocks].reshape(b1 - b0, tokens, num_kv_heads)
        vs = v_scale[blocks].reshape(b1 - b0, tokens, num_kv_heads)
        q = Q[b0:b1].reshape(b1 - b0, num_kv_heads, group, head_dim)
        scores = torch.einsum("nkgd,nskd->nkgs", q, k)
        scores = scores * (ks.permute(0, 2, 1).unsqueeze(2) / math.sqrt(head_dim))
        valid = pos[None, :] < lens[b0:b1, None]                                 # [n, s]
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1) * vs.permute(0, 2, 1).unsqueeze(2)
        out = torch.einsum("nkgs,nskd->nkgd", weights, v)
        output[b0:b1] = out.reshape(b1 - b0, num_heads, head_dim)
