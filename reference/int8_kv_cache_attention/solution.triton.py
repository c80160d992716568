"""Split-K (flash-decoding) INT8 KV-cache attention in Triton.

Pass 1: program (head, split) streams its chunk of the sequence in BLOCK_N-token tiles, keeps a
running max, sum and v_scale-weighted accumulator in float32, and writes them to a workspace.
Pass 2: one program per head merges the splits by log-sum-exp. The scales are factored out of
the dot products: score = k_scale * (q . k_int8) / sqrt(d), and v_scale folds into the weight.
"""

import math

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _partial_kernel(Q, K, V, KS, VS, M_ws, L_ws, ACC_ws, seq_len, head_dim, chunk, qk_scale,
                    num_splits, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    head = tl.program_id(0)
    split = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < head_dim
    q = tl.load(Q + head * head_dim + offs_d, mask=d_mask, other=0.0) * qk_scale  # log2 domain

    start = split * chunk
    end = tl.minimum(start + chunk, seq_len)
    zero = tl.sum(tl.zeros([1], dtype=tl.float32), axis=0)  # a float32 scalar
    m_i = zero - float("inf")
    l_i = zero
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    row_base = head.to(tl.int64) * seq_len
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        ptrs = (row_base + offs_n)[:, None] * head_dim + offs_d[None, :]
        mask2 = n_mask[:, None] & d_mask[None, :]
        k = tl.load(K + ptrs, mask=mask2, other=0).to(tl.float32)
        ks = tl.load(KS + row_base + offs_n, mask=n_mask, other=0.0)
        s = tl.sum(k * q[None, :], axis=1) * ks
        s = tl.where(n_mask, s, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        vs = tl.load(VS + row_base + offs_n, mask=n_mask, other=0.0)
        v = tl.load(V + ptrs, mask=mask2, other=0).to(tl.float32)
        acc = acc * alpha + tl.sum((p * vs)[:, None] * v, axis=0)
        m_i = m_new
    slot = head * num_splits + split
    tl.store(M_ws + slot, m_i)
    tl.store(L_ws + slot, l_i)
    tl.store(ACC_ws + slot * BLOCK_D + offs_d, acc)


@triton.jit
def _combine_kernel(M_ws, L_ws, ACC_ws, OUT, head_dim, num_splits,
                    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    head = tl.program_id(0)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < num_splits
    m = tl.load(M_ws + head * num_splits + offs_s, mask=s_mask, other=-float("inf"))
    l = tl.load(L_ws + head * num_splits + offs_s, mask=s_mask, other=0.0)
    m_max = tl.max(m, axis=0)
    w = tl.where(s_mask & (m > -float("inf")), tl.exp2(m - m_max), 0.0)
    acc = tl.load(ACC_ws + (head * num_splits + offs_s)[:, None] * BLOCK_D + offs_d[None, :],
                  mask=s_mask[:, None], other=0.0)
    out = tl.sum(acc * w[:, None], axis=0) / tl.sum(l * w, axis=0)
    tl.store(OUT + head * head_dim + offs_d, out, mask=offs_d < head_dim)


def _num_splits(num_heads: int, seq_len: int, block_n: int, device: torch.device) -> int:
    tiles = triton.cdiv(seq_len, block_n)
    if device.type != "cuda":
        return min(tiles, 2)  # the CPU interpreter runs programs one by one: keep them few
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    # enough programs for several waves, but each split should stream at least a few tiles
    wanted = triton.cdiv(4 * sms, num_heads)
    return max(1, min(wanted, triton.cdiv(tiles, 4), 128))


def solve(Q: torch.Tensor, K_int8: torch.Tensor, V_int8: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, output: torch.Tensor, num_heads: int, seq_len: int, head_dim: int):
    block_d = triton.next_power_of_2(head_dim)
    block_n = max(16, min(64, 8192 // block_d))
    splits = _num_splits(num_heads, seq_len, block_n, Q.device)
    chunk = triton.cdiv(triton.cdiv(seq_len, splits), block_n) * block_n
    splits = triton.cdiv(seq_len, chunk)
    m_ws = torch.empty(num_heads * splits, device=Q.device, dtype=torch.float32)
    l_ws = torch.empty_like(m_ws)
    acc_ws = torch.empty(num_heads * splits * block_d, device=Q.device, dtype=torch.float32)
    qk_scale = LOG2E / math.sqrt(head_dim)
    _partial_kernel[(num_heads, splits)](Q, K_int8, V_int8, k_scale, v_scale, m_ws, l_ws, acc_ws,
                                         seq_len, head_dim, chunk, qk_scale, splits,
                                         BLOCK_N=block_n, BLOCK_D=block_d, num_warps=4)
    _combine_kernel[(num_heads,)](m_ws, l_ws, acc_ws, output, head_dim, splits,
                                  BLOCK_S=max(2, triton.next_power_of_2(splits)), BLOCK_D=block_d)
