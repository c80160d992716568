"""Quantize-on-store in Triton: one pass over the new K and V, rows written straight into their slots.

The (token, head) rows of ``key`` and ``value`` are contiguous, so row r = token * H + head
starts at r * head_dim. A program takes BLOCK_R rows of K and the same rows of V, finds each
row's max |x|, and stores q = round_half_even(x / scale) and scale = max|x| / 127 at
(slot * H + head) in the caches. Rows whose token has slot -1 are masked out entirely (neither
read nor written), so untouched slots keep their contents.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _round_half_even(y):
    """Round to nearest, ties to even, exactly (floor-based; |y| <= 127 here)."""
    r = tl.floor(y)
    frac = y - r                                  # exact for |y| < 2**23
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    up = (frac > 0.5) | ((frac == 0.5) & odd)
    return tl.where(up, r + 1.0, r)


@triton.jit
def _load_and_quantize(src_ptr, src_off, mask2):
    x = tl.load(src_ptr + src_off, mask=mask2, other=0.0).to(tl.float32)
    amax = tl.max(tl.abs(x), axis=1)                      # [BLOCK_R]
    scale = amax / 127.0
    safe = tl.where(scale > 0, scale, 1.0)               # all-zero row: x / 1 == 0
    q = _round_half_even(x / safe[:, None])
    q = tl.minimum(tl.maximum(q, -127.0), 127.0).to(tl.int8)
    return q, scale


@triton.jit
def _quantize_store_kernel(K, V, SLOTS, KC, VC, KS, VS, total_rows, num_heads, head_dim,
                           BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, BLOCK_D)
    in_range = rows < total_rows
    token = rows // num_heads
    head = rows - token * num_heads
    slot = tl.load(SLOTS + token, mask=in_range, other=-1)
    keep = in_range & (slot >= 0)
    d_mask = offs_d < head_dim
    mask2 = keep[:, None] & d_mask[None, :]
    src_off = rows.to(tl.int64)[:, None] * head_dim + offs_d[None, :]
    dst_row = slot.to(tl.int64) * num_heads + head           # (slot, head) row of the cache
    dst_off = dst_row[:, None] * head_dim + offs_d[None, :]

    qk, sk = _load_and_quantize(K, src_off, mask2)
    tl.store(KC + dst_off, qk, mask=mask2)
    tl.store(KS + dst_row, sk, mask=keep)
    qv, sv = _load_and_quantize(V, src_off, mask2)
    tl.store(VC + dst_off, qv, mask=mask2)
    tl.store(VS + dst_row, sv, mask=keep)


def solve(key: torch.Tensor, value: torch.Tensor, slot_mapping: torch.Tensor,
          k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, N: int, num_kv_heads: int, head_dim: int, num_slots: int):
    total_rows = N * num_kv_heads
    if total_rows == 0:
        return
    block_d = triton.next_power_of_2(head_dim)
    # on a GPU ~4K elements per program; under the CPU interpreter few, large programs
    elems = 4096 if key.is_cuda else 1 << 16
    block_r = max(1, min(elems // block_d, triton.next_power_of_2(total_rows)))
    grid = (triton.cdiv(total_rows, block_r),)
    _quantize_store_kernel[grid](key, value, slot_mapping, k_cache, v_cache, k_scale, v_scale,
                                 total_rows, num_kv_heads, head_dim,
                                 BLOCK_R=block_r, BLOCK_D=block_d, num_warps=4)
