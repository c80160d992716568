"""Split-K (flash-decoding) INT8 KV-cache attention in Triton, near the memory-bandwidth floor.

Pass 1: program (split, head) streams one contiguous chunk of one head's sequence in tiles of
BLOCK_N tokens. K and V are read as int32 words (four int8 values each, 16 bytes per thread).
Each byte becomes a float with one AND-XOR and one subtraction instead of a conversion
instruction (Hopper converts int8 at 1/8 of its FMA rate): bytes 0 and 1 of a word are masked
in place under a float exponent (2^23 + u, resp. 2^15 + u, where u = value + 128), bytes 2 and
3 the same after one shift of the word. So the tile splits into four interleaved slices of the
head dimension (dims 4w, 4w+1, 4w+2, 4w+3), each with its own slice of q and accumulator.
Scales are factored out: score = k_scale * (q . k_int8) * log2(e) / sqrt(d), and v_scale folds
into the softmax weight. The accumulator stays two-dimensional (one partial per token row of
the tile) so no cross-thread reduction happens per tile, and it is rescaled only when the
running maximum grows. The last program of each head to finish (an atomic counter) merges the
head's splits by log-sum-exp: one launch, no second kernel (a head with a single split writes
its output directly). Pure Triton, so it also runs under the CPU interpreter.
"""

import math
import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634

# Under Triton's CPU interpreter each call of a @triton.jit helper re-patches triton.language
# (milliseconds, most of the interpreter's time in this kernel), so there the per-tile helpers
# are plain functions, run inside the kernel's already patched scope. Compiled kernels are the
# same either way (Triton inlines its helpers).
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
helper = (lambda fn: fn) if INTERPRETED else triton.jit

# launch configuration (a tuning script may assign to this dict to compare variants)
CONFIG = {
    "programs_per_sm": 8,     # (split, head) programs that should fit on one SM at once
    "num_warps": 2,
    "num_stages": 1,
    "tile_words": 512,        # BLOCK_N * BLOCK_W: int32 words of K per tile
    "min_split_bytes": 16384, # K+V bytes a split should stream at least
    "interleave": False,      # a head's splits take turns over its tiles (one window at a time)
}
INTERPRETER_TILE_WORDS = 65536   # under the CPU interpreter: int32 words of K per tile
INTERPRETER_MAX_BLOCK_N = 4096


@helper
def _lo_byte(x):
    # byte 0 of each int32 word, as float: 2^23 + (b ^ 0x80) - (2^23 + 128) == signed b
    return ((x & 0xFF) ^ 0x4B000080).to(tl.float32, bitcast=True) - 8388736.0


@helper
def _hi_byte(x):
    # byte 1 of each word, masked in place under 2^15: 2^15 + (b ^ 0x80) - (2^15 + 128)
    return ((x & 0xFF00) ^ 0x47008000).to(tl.float32, bitcast=True) - 32896.0


@triton.jit
def _attention_kernel(Q, K32, V32, KS, VS, OUT, WS_ACC, WS_ML, COUNT, seq_len, W, chunk,
                      qk_scale, num_splits, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
                      DIRECT: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
                      INTERLEAVE: tl.constexpr = False):
    split = tl.program_id(0)
    head = tl.program_id(1)
    D = 4 * W
    offs_w = tl.arange(0, BLOCK_W)
    w_mask = offs_w < W
    q_ptr = Q + head * D + 4 * offs_w
    q0 = tl.load(q_ptr + 0, mask=w_mask, other=0.0) * qk_scale   # log2 domain
    q1 = tl.load(q_ptr + 1, mask=w_mask, other=0.0) * qk_scale
    q2 = tl.load(q_ptr + 2, mask=w_mask, other=0.0) * qk_scale
    q3 = tl.load(q_ptr + 3, mask=w_mask, other=0.0) * qk_scale

    if INTERLEAVE:   # split s reads tiles s, s + num_splits, ...
        start = split * BLOCK_N
        end = seq_len
        stride = num_splits * BLOCK_N
    else:
        start = split * chunk
        end = tl.minimum(start + chunk, seq_len)
        stride = BLOCK_N
    m_i = tl.max(tl.full([BLOCK_N], -1.0e30, tl.float32), axis=0)   # a float32 scalar
    l_i = tl.sum(tl.zeros([BLOCK_N], dtype=tl.float32), axis=0)
    a0 = tl.zeros([BLOCK_N, BLOCK_W], dtype=tl.float32)
    a1 = tl.zeros([BLOCK_N, BLOCK_W], dtype=tl.float32)
    a2 = tl.zeros([BLOCK_N, BLOCK_W], dtype=tl.float32)
    a3 = tl.zeros([BLOCK_N, BLOCK_W], dtype=tl.float32)
    row_base = head.to(tl.int64) * seq_len
    for n0 in range(start, end, stride):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        ptrs = (row_base + offs_n)[:, None] * W + offs_w[None, :]
        mask2 = n_mask[:, None] & w_mask[None, :]
        k = tl.load(K32 + ptrs, mask=mask2, other=0)
        v = tl.load(V32 + ptrs, mask=mask2, other=0)
        ks = tl.load(KS + row_base + offs_n, mask=n_mask, other=0.0)
        vs = tl.load(VS + row_base + offs_n, mask=n_mask, other=0.0)

        kh = k >> 16
        dot = (_lo_byte(k) * q0[None, :] + _hi_byte(k) * q1[None, :]
               + _lo_byte(kh) * q2[None, :] + _hi_byte(kh) * q3[None, :])
        s = tl.where(n_mask, tl.sum(dot, axis=1) * ks, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        if m_new > m_i:   # rescale only when the running maximum grows
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha
            a0 = a0 * alpha
            a1 = a1 * alpha
            a2 = a2 * alpha
            a3 = a3 * alpha
            m_i = m_new
        p = tl.exp2(s - m_i)
        l_i += tl.sum(p, axis=0)
        wgt = (p * vs)[:, None]
        vh = v >> 16
        a0 += wgt * _lo_byte(v)
        a1 += wgt * _hi_byte(v)
        a2 += wgt * _lo_byte(vh)
        a3 += wgt * _hi_byte(vh)

    o0 = tl.sum(a0, axis=0)
    o1 = tl.sum(a1, axis=0)
    o2 = tl.sum(a2, axis=0)
    o3 = tl.sum(a3, axis=0)
    if DIRECT:   # a single split: this program has the whole row
        inv = 1.0 / l_i
        o_ptr = OUT + head * D + 4 * offs_w
        tl.store(o_ptr + 0, o0 * inv, mask=w_mask)
        tl.store(o_ptr + 1, o1 * inv, mask=w_mask)
        tl.store(o_ptr + 2, o2 * inv, mask=w_mask)
        tl.store(o_ptr + 3, o3 * inv, mask=w_mask)
    else:
        slot = head * num_splits + split
        o_ptr = WS_ACC + slot.to(tl.int64) * D + 4 * offs_w
        tl.store(o_ptr + 0, o0, mask=w_mask)
        tl.store(o_ptr + 1, o1, mask=w_mask)
        tl.store(o_ptr + 2, o2, mask=w_mask)
        tl.store(o_ptr + 3, o3, mask=w_mask)
        tl.store(WS_ML + 2 * slot, m_i)
        tl.store(WS_ML + 2 * slot + 1, l_i)
        # the last program of this head to finish merges all its splits: the barrier orders
        # every thread's stores before the (release) count, and the count's acquire before the
        # merge's loads, which bypass L1 (.cg)
        tl.debug_barrier()
        finished = tl.atomic_add(COUNT + head, 1, sem="acq_rel")
        tl.debug_barrier()
        if finished == num_splits - 1:
            tl.store(COUNT + head, 0)   # ready for the next launch
            _merge_splits(WS_ACC, WS_ML, OUT, head, D, num_splits, BLOCK_S, BLOCK_D)


@triton.jit
def _merge_splits(WS_ACC, WS_ML, OUT, head, head_dim, num_splits,
                  BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < head_dim
    first = head * num_splits
    m_max = tl.max(tl.full([BLOCK_S], -1.0e30, tl.float32), axis=0)
    for s0 in range(0, num_splits, BLOCK_S):
        s_mask = s0 + offs_s < num_splits
        m = tl.load(WS_ML + 2 * (first + s0 + offs_s), mask=s_mask, other=-1.0e30,
                    cache_modifier=".cg")
        m_max = tl.maximum(m_max, tl.max(m, axis=0))
    total = tl.sum(tl.zeros([BLOCK_S], dtype=tl.float32), axis=0)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        idx = s0 + offs_s
        s_mask = idx < num_splits
        m = tl.load(WS_ML + 2 * (first + idx), mask=s_mask, other=-1.0e30, cache_modifier=".cg")
        l = tl.load(WS_ML + 2 * (first + idx) + 1, mask=s_mask, other=0.0, cache_modifier=".cg")
        w = tl.where(s_mask, tl.exp2(m - m_max), 0.0)
        total += tl.sum(l * w, axis=0)
        part = tl.load(WS_ACC + (first + idx).to(tl.int64)[:, None] * head_dim + offs_d[None, :],
                       mask=s_mask[:, None] & d_mask[None, :], other=0.0, cache_modifier=".cg")
        acc += tl.sum(part * w[:, None], axis=0)
    tl.store(OUT + head * head_dim + offs_d, acc / total, mask=d_mask)


_SM_COUNT = {}
_WORKSPACE = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def _workspace(device: torch.device, n_acc: int, n_ml: int):
    """Cached buffers, grown on demand (never shrunk): partial accumulators, (max, sum) pairs,
    and one finished-splits counter per head (zero between launches: the merging program
    resets its head's)."""
    acc, ml, count = _WORKSPACE.get(device, (None, None, None))
    if acc is None or acc.numel() < n_acc or ml.numel() < n_ml:
        acc = torch.empty(max(n_acc, 1 << 16), device=device, dtype=torch.float32)
        ml = torch.empty(max(n_ml, 1 << 12), device=device, dtype=torch.float32)
        count = count if count is not None else torch.zeros(64, device=device, dtype=torch.int32)
        _WORKSPACE[device] = (acc, ml, count)
    return acc, ml, count


def plan(num_heads: int, seq_len: int, head_dim: int, device: torch.device, config=None):
    """(BLOCK_N, BLOCK_W, chunk, splits) for a shape: one wave of programs, each split long
    enough to be worth a program."""
    cfg = dict(CONFIG, **(config or {}))
    words = head_dim // 4
    block_w = triton.next_power_of_2(words)
    sms = _sm_count(device)
    if sms:
        block_n = max(16, min(256, cfg["tile_words"] // block_w))
    else:
        # the CPU interpreter pays mostly per operation (and per call of a @triton.jit helper),
        # little per element: few programs, tiles of up to 64K words
        block_n = max(16, min(INTERPRETER_MAX_BLOCK_N, INTERPRETER_TILE_WORDS // block_w))
    block_n = min(block_n, max(16, triton.next_power_of_2(seq_len)))
    if sms == 0:
        splits = min(2, triton.cdiv(seq_len, block_n))
    else:
        capacity = sms * cfg["programs_per_sm"]
        min_tokens = max(block_n, triton.cdiv(cfg["min_split_bytes"], 2 * head_dim))
        splits = max(1, min(capacity // num_heads, triton.cdiv(seq_len, min_tokens), 1024))
    chunk = triton.cdiv(triton.cdiv(seq_len, splits), block_n) * block_n
    splits = triton.cdiv(seq_len, chunk)
    return block_n, block_w, chunk, splits


def solve(Q: torch.Tensor, K_int8: torch.Tensor, V_int8: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, output: torch.Tensor, num_heads: int, seq_len: int, head_dim: int):
    cfg = CONFIG
    block_n, block_w, chunk, splits = plan(num_heads, seq_len, head_dim, Q.device, cfg)
    words = head_dim // 4
    K32 = K_int8.view(torch.int32)   # [H, S, D/4]: four int8 values per word
    V32 = V_int8.view(torch.int32)
    direct = splits == 1
    ws_acc, ws_ml, count = _workspace(Q.device, num_heads * splits * head_dim, 2 * num_heads * splits)
    qk_scale = LOG2E / math.sqrt(head_dim)
    block_d = triton.next_power_of_2(head_dim)
    block_s = max(2, min(triton.next_power_of_2(splits), max(2, 2048 // block_d)))
    _attention_kernel[(splits, num_heads)](
        Q, K32, V32, k_scale, v_scale, output, ws_acc, ws_ml, count, seq_len, words, chunk,
        qk_scale, splits, BLOCK_N=block_n, BLOCK_W=block_w, DIRECT=direct, BLOCK_S=block_s,
        BLOCK_D=block_d, INTERLEAVE=cfg["interleave"], num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])
