"""A correct CuPy solution of challenge 96: an ElementwiseKernel dequantizes, array code does
the rest."""

import math

import cupy as cp

dequantize = cp.ElementwiseKernel("int8 x, float32 scale", "float32 y", "y = (float)x * scale",
                                  "dequantize_int8")


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    keys = dequantize(K_int8, k_scale[:, :, None])        # [H, S, D]
    values = dequantize(V_int8, v_scale[:, :, None])
    scores = cp.matmul(keys, Q[:, :, None])[:, :, 0] / math.sqrt(head_dim)   # [H, S]
    weights = cp.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    output[...] = cp.matmul(weights[:, None, :], values)[:, 0, :]
