"""Paged INT8 decode attention with grouped-query heads, in Triton (split-K, two kernels).

Pass 1: program (chunk, kv_head, sequence) streams tokens [chunk * CHUNK, ...) of one sequence
for one KV head, in tiles of BLOCK_N tokens found through the block table, and serves all
G = num_heads / num_kv_heads query heads of that KV head at once: each K and V byte is read
once per KV head, not once per query head. Scales are factored out of the dot products
(score = k_scale * (q . k_int8) * log2(e) / sqrt(d); v_scale folds into the softmax weight), and
the softmax is online (running max and sum per query head, exp2). Tokens past the sequence's
length, and chunks past its end, are masked, so stale data in a last block is never used. A
sequence that fits in one chunk is written straight to the output; otherwise pass 2, program
(head, sequence), merges the chunks by log-sum-exp. Pure Triton, so it also runs under the CPU
interpreter.
"""

import math

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _partial_kernel(Q, KC, VC, KS, VS, BT, LENS, OUT, WS_ACC, WS_ML, num_heads, num_kv_heads,
                    head_dim, block_size, max_blocks, max_chunks, chunk, qk_scale,
                    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    c = tl.program_id(0)
    kvh = tl.program_id(1)
    b = tl.program_id(2)
    length = tl.load(LENS + b)
    start = c * chunk
    end = tl.minimum(start + chunk, length)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    g_mask = offs_g < GROUP
    d_mask = offs_d < head_dim
    heads = kvh * GROUP + offs_g                                          # query heads served
    q_ptrs = Q + (b * num_heads + heads)[:, None] * head_dim + offs_d[None, :]
    q = tl.load(q_ptrs, mask=g_mask[:, None] & d_mask[None, :], other=0.0) * qk_scale

    m_i = tl.full([BLOCK_G], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    table = BT + b.to(tl.int64) * max_blocks
    for n0 in range(start, end, BLOCK_N):
        pos = n0 + offs_n
        n_mask = pos < end
        block = tl.load(table + pos // block_size, mask=n_mask, other=0).to(tl.int64)
        row = (block * block_size + pos % block_size) * num_kv_heads + kvh    # (slot, kv head)
        mask2 = n_mask[:, None] & d_mask[None, :]
        k = tl.load(KC + row[:, None] * head_dim + offs_d[None, :], mask=mask2, other=0)
        v = tl.load(VC + row[:, None] * head_dim + offs_d[None, :], mask=mask2, other=0)
        ks = tl.load(KS + row, mask=n_mask, other=0.0)
        vs = tl.load(VS + row, mask=n_mask, other=0.0)

        dots = tl.sum(q[:, None, :] * k.to(tl.float32)[None, :, :], axis=2)  # [G, N]
        s = tl.where(n_mask[None, :], dots * ks[None, :], float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        w = p * vs[None, :]
        acc = acc * alpha[:, None] + tl.sum(w[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
        m_i = m_new

    # per-head masks (tensors, not scalars): which program writes what
    n_chunks = tl.cdiv(length, chunk) + offs_g * 0
    live = g_mask & ((start + offs_g * 0) < length)
    single = live & (n_chunks == 1)          # the whole sequence is in this program
    split = live & (n_chunks > 1)            # a partial for pass 2
    o_ptrs = OUT + (b * num_heads + heads)[:, None] * head_dim + offs_d[None, :]
    safe_l = tl.where(l_i > 0, l_i, 1.0)     # 0 only where nothing is stored
    tl.store(o_ptrs, acc / safe_l[:, None], mask=single[:, None] & d_mask[None, :])
    part = (b.to(tl.int64) * num_heads + heads) * max_chunks + c             # [G]
    tl.store(WS_ACC + part[:, None] * head_dim + offs_d[None, :], acc,
             mask=split[:, None] & d_mask[None, :])
    tl.store(WS_ML + 2 * part, m_i, mask=split)
    tl.store(WS_ML + 2 * part + 1, l_i, mask=split)


@triton.jit
def _combine_kernel(WS_ACC, WS_ML, LENS, OUT, num_heads, head_dim, max_chunks, chunk,
                    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    h = tl.program_id(0)
    b = tl.program_id(1)
    length = tl.load(LENS + b)
    n_chunks = tl.cdiv(length, chunk)
    n_chunks = tl.where(n_chunks > 1, n_chunks, 0)   # a single chunk was written by pass 1
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < head_dim
    first = (b.to(tl.int64) * num_heads + h) * max_chunks
    m_max = tl.max(tl.full([BLOCK_C], -1.0e30, tl.float32), axis=0)
    for c0 in range(0, n_chunks, BLOCK_C):
        c_mask = (c0 + offs_c) < n_chunks
        m = tl.load(WS_ML + 2 * (first + c0 + offs_c), mask=c_mask, other=-1.0e30)
        m_max = tl.maximum(m_max, tl.max(m, axis=0))
    total = tl.sum(tl.zeros([BLOCK_C], dtype=tl.float32), axis=0)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for c0 in range(0, n_chunks, BLOCK_C):
        idx = first + c0 + offs_c
        c_mask = (c0 + offs_c) < n_chunks
        m = tl.load(WS_ML + 2 * idx, mask=c_mask, other=-1.0e30)
        l = tl.load(WS_ML + 2 * idx + 1, mask=c_mask, other=0.0)
        wgt = tl.where(c_mask, tl.exp2(m - m_max), 0.0)
        total += tl.sum(l * wgt, axis=0)
        part = tl.load(WS_ACC + idx[:, None] * head_dim + offs_d[None, :],
                       mask=c_mask[:, None] & d_mask[None, :], other=0.0)
        acc += tl.sum(part * wgt[:, None], axis=0)
    total = tl.where(total > 0, total, 1.0)     # 0 only for a single-chunk sequence (not stored)
    tl.store(OUT + (b * num_heads + h) * head_dim + offs_d, acc / total,
             mask=d_mask & ((offs_d * 0 + n_chunks) > 0))


_WORKSPACE = {}
_SM_COUNT = {}


def _workspace(device: torch.device, n_acc: int, n_ml: int):
    """A cached workspace, grown on demand (never shrunk)."""
    acc, ml = _WORKSPACE.get(device, (None, None))
    if acc is None or acc.numel() < n_acc or ml.numel() < n_ml:
        acc = torch.empty(max(n_acc, 1 << 16), device=device, dtype=torch.float32)
        ml = torch.empty(max(n_ml, 1 << 12), device=device, dtype=torch.float32)
        _WORKSPACE[device] = (acc, ml)
    return acc, ml


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def plan(batch: int, num_kv_heads: int, group: int, head_dim: int, longest: int,
         device: torch.device):
    """(BLOCK_G, BLOCK_N, BLOCK_D, chunk): tiles of about 8K products on a GPU (a few large
    ones under the interpreter), and chunks so that the programs fill the GPU a few times over
    when the sequences average half the longest possible length."""
    block_g = triton.next_power_of_2(group)
    block_d = triton.next_power_of_2(head_dim)
    sms = _sm_count(device)
    budget = 8192 if sms else 1 << 17
    block_n = max(16, min(256, budget // (block_g * block_d)))
    if sms == 0:
        chunk = 512   # long sequences still take the two-pass path under the interpreter
    else:
        programs = 4 * sms
        ideal = (longest * batch * num_kv_heads) // (2 * programs)
        chunk = min(2048, max(256, ideal))
    chunk = triton.cdiv(chunk, block_n) * block_n
    return block_g, block_n, block_d, chunk


def solve(Q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, block_table: torch.Tensor, context_lens: torch.Tensor,
          output: torch.Tensor, batch: int, num_heads: int, num_kv_heads: int, head_dim: int,
          block_size: int, num_blocks: int, max_blocks_per_seq: int):
    if batch == 0:
        return
    group = num_heads // num_kv_heads
    longest = max_blocks_per_seq * block_size          # no host sync on context_lens
    block_g, block_n, block_d, chunk = plan(batch, num_kv_heads, group, head_dim, longest,
                                            Q.device)
    max_chunks = triton.cdiv(longest, chunk)
    ws_acc, ws_ml = _workspace(Q.device, batch * num_heads * max_chunks * head_dim,
                               2 * batch * num_heads * max_chunks)
    qk_scale = LOG2E / math.sqrt(head_dim)
    _partial_kernel[(max_chunks, num_kv_heads, batch)](
        Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, ws_acc, ws_ml,
        num_heads, num_kv_heads, head_dim, block_size, max_blocks_per_seq, max_chunks, chunk,
        qk_scale, GROUP=group, BLOCK_G=block_g, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=4)
    if max_chunks > 1:
        block_c = max(2, min(triton.next_power_of_2(max_chunks), max(2, 4096 // block_d)))
        _combine_kernel[(num_heads, batch)](ws_acc, ws_ml, context_lens, output, num_heads,
                                            head_dim, max_chunks, chunk, BLOCK_C=block_c,
                                            BLOCK_D=block_d, num_warps=4)
