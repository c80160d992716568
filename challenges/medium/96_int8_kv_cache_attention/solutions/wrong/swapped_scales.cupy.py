"""WRONG on purpose (tests expect wrong_answer): k_scale and v_scale swapped."""

import math

import cupy as cp


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    keys = K_int8.astype(cp.float32) * v_scale[:, :, None]
    values = V_int8.astype(cp.float32) * k_scale[:, :, None]
    scores = cp.einsum("hd,hsd->hs", Q, keys) / math.sqrt(head_dim)
    weights = cp.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    output[...] = cp.einsum("hs,hsd->hd", weights, values)
