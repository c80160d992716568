"""Paged INT8 decode attention with grouped-query heads, in Triton: tensor-core dots, split-K, one
launch.

Program (chunk, kv_head, sequence) streams tokens [chunk * CHUNK, ...) of one sequence for one KV
head, in tiles of BLOCK_N tokens found through the block table, and serves all G = num_heads /
num_kv_heads query heads of that KV head at once: each K and V byte is read once per KV head.

Both products run on tensor cores (tl.dot, fp16 operands, float32 accumulation) yet stay close
to float32:

* int8 K and V are exact in fp16 (|x| <= 128). On CUDA the conversion is the "magic number"
  trick in inline PTX, five instructions per four bytes (xor 0x80 per byte, prmt each byte
  under an fp16 exponent byte 0x64: half(0x6400 | u) = 1024 + u, subtract 1152); Triton's own
  int8 -> fp16 emits two conversion instructions per element (cvt.s16.s8, cvt.rn.f16.s16).
  K and V tiles are copied to shared memory asynchronously (cp.async, num_stages deep); K is
  converted as it is read back, V before its second trip through shared memory (see
  _int8_to_fp16: read transposed as int8 it would be fetched one byte per instruction).
* Q (scaled by log2(e) / sqrt(d)) is normalised per head by a power of two (max |q| in [1, 2):
  no fp16 overflow, few subnormals), then split into q_hi = fp16(q) and q_lo = fp16(q - q_hi):
  q . k = q_hi . k + q_lo . k to about 22 bits.
* The softmax weight w = p * v_scale (p in [0, 1]) is scaled per tile by a power of two (max in
  [1, 2)), split the same way, and the scale is undone on the tile's product.
* With STACK (group <= 8), hi and lo halves are stacked as the rows of one dot (rows 0..BG-1 the
  hi halves, BG..2BG-1 the lo halves, BG = the group padded to 8): a dot needs at least 16 rows
  anyway, so the split costs no extra tensor-core work; the halves are summed after the dot.
  Without STACK, hi and lo are two dots of BG >= 16 rows each.

Scales are factored out of the dots (score = k_scale * (q . k_int8), v_scale folds into the
weight), the softmax is online (running max and sum per query head, exp2). Tokens past the
sequence's length, and chunks past its end, are masked, so stale rows of a last block are never
used. A sequence that fits in one chunk is written straight to the output; otherwise every chunk
stores its partial (accumulator, max, sum) and the last chunk of (sequence, KV head) to finish
(an atomic counter) merges them by log-sum-exp: one launch, no host synchronisation, a cached
workspace. Pure Triton apart from the inline PTX, which is used only on CUDA devices (the CPU
interpreter runs the plain conversion).
"""

import math
import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634

# Under Triton's CPU interpreter each call of a @triton.jit helper re-patches triton.language
# (milliseconds, much of the interpreter's time in this kernel), so there the helpers are plain
# functions, run inside the kernel's already patched scope. Compiled kernels are the same either
# way (Triton inlines its helpers).
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
helper = (lambda fn: fn) if INTERPRETED else triton.jit

# Launch and tiling knobs (benchmarks/tune_triton_98.py assigns to this dict to compare variants).
CONFIG = {
    "block_n": 64,          # tokens per tile
    "num_warps": 2,         # H100, perf case (benchmarks/tune_triton_98.py): 2 warps 226 us,
                            # 4 warps 253 us
    "num_stages": 3,        # software-pipelining depth of the K/V loads
    "stack": True,          # hi/lo halves as rows of one dot when the group has <= 8 heads
    "asm_cvt": True,        # inline-PTX int8 -> fp16 (CUDA only)
    "early_k": False,       # convert K before its shared-memory trip too, as V always is (more
                            # shared memory, fewer instructions; see _int8_to_fp16)
    "waves": 32,            # chunk programs per SM, assuming sequences average half the longest
    "min_chunk": 256,       # tokens per chunk, at least (rounded up to block_n)
    "max_chunk": 4096,      # ... and at most
    "chunk": None,          # a fixed chunk length (tokens) instead of the heuristic
    "index64": None,        # 64-bit cache offsets: None = only where the cache needs them
}
# Under the CPU interpreter each operation costs a fraction of a millisecond, whatever its size:
# few programs, large tiles. Where the longest sequence is short (<= split_below tokens), chunks
# of min_chunk tokens, so that the functional cases exercise the multi-chunk merge; longer
# sequences are one chunk each (a merge doubles the programs: the performance case would take
# minutes more).
INTERPRETER_CONFIG = {"max_block_n": 2048, "min_chunk": 512, "split_below": 1024}


# Four int8 (one 32-bit register, $2) to four fp16 (two f16x2 registers: $0 = bytes 0 and 1,
# $1 = bytes 2 and 3, low half first): byte b -> u = b ^ 0x80 = b + 128; prmt puts u under the
# exponent byte 0x64, half(0x6400 | u) = 1024 + u; minus 1152 (0x6480) leaves b, exactly.
I8X4_TO_F16X4_PTX = tl.constexpr("""{
    .reg .b32 t, c;
    xor.b32 t, $2, 0x80808080;
    mov.b32 c, 0x64806480;
    prmt.b32 $0, t, 0x64646464, 0x4140;
    prmt.b32 $1, t, 0x64646464, 0x4342;
    sub.f16x2 $0, $0, c;
    sub.f16x2 $1, $1, c;
}""")


@helper
def _int8_to_fp16(x, USE_ASM: tl.constexpr, PURE: tl.constexpr):
    """int8 -> fp16 (exact). PURE=False keeps Triton from moving the conversion past a
    layout change: for V (the B operand of P.V, transposed relative to memory) the int8 tile
    would then be read from shared memory one byte at a time; converted first, the fp16 tile
    goes through shared memory with 16-byte stores and ldmatrix.trans."""
    if USE_ASM:
        return tl.inline_asm_elementwise(asm=I8X4_TO_F16X4_PTX, constraints="=r,=r,r", args=[x],
                                         dtype=tl.float16, is_pure=PURE, pack=4)
    else:
        return x.to(tl.float16)


@helper
def _pow2_exponent(x):
    """The biased float32 exponent of x >= 0, clamped to [1, 253]: 2^(127 - e) and
    2^(e - 127) are then exact, finite inverses, and x * 2^(127 - e) is in [1, 2) for normal
    x."""
    e = (x.to(tl.int32, bitcast=True) >> 23) & 0xFF
    return tl.minimum(tl.maximum(e, 1), 253)


@helper
def _pow2(e):
    """2^(e - 127) as float32, for a biased exponent e in [1, 254]."""
    return (e << 23).to(tl.float32, bitcast=True)


@helper
def _split_rows(Q, q_row0, qk_scale, ROWS: tl.constexpr, BLOCK_G: tl.constexpr,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                LO_FROM: tl.constexpr, LO_ONLY: tl.constexpr):
    """fp16 hi (rows < LO_FROM) or lo (rows >= LO_FROM) halves of the group's queries, scaled
    by log2(e) / sqrt(d) and normalised per head by a power of two. Row r serves head
    r % BLOCK_G of the group; padding rows are zero."""
    offs_r = tl.arange(0, ROWS)
    offs_d = tl.arange(0, BLOCK_D)
    g = offs_r % BLOCK_G
    mask = (g < GROUP)[:, None] & (offs_d < HEAD_DIM)[None, :]
    q = tl.load(Q + (q_row0 + g)[:, None] * HEAD_DIM + offs_d[None, :], mask=mask, other=0.0)
    q = q * qk_scale
    e = _pow2_exponent(tl.max(tl.abs(q), axis=1))
    q = q * _pow2(254 - e)[:, None]                # max |q| of each head in [1, 2)
    hi = q.to(tl.float16)
    lo = (q - hi.to(tl.float32)).to(tl.float16)
    if LO_ONLY:
        return lo
    else:
        return tl.where((offs_r >= LO_FROM)[:, None], lo, hi)


@triton.jit
def _attention_kernel(Q, KC, VC, KS, VS, BT, LENS, OUT, WS_ACC, WS_ML, COUNT,
                      num_heads, num_kv_heads, max_blocks, max_chunks, chunk, qk_scale,
                      GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr,
                      BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                      STACK: tl.constexpr, USE_ASM: tl.constexpr, EARLY_K: tl.constexpr,
                      INDEX64: tl.constexpr):
    c = tl.program_id(0)
    kvh = tl.program_id(1)
    b = tl.program_id(2)
    length = tl.load(LENS + b)
    start = c * chunk
    if start >= length:
        return
    end = tl.minimum(start + chunk, length)
    n_chunks = tl.cdiv(length, chunk)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    q_row0 = b * num_heads + kvh * GROUP                 # first query head served

    # per-head power of two that normalised q (undone on the scores)
    q = tl.load(Q + (q_row0 + offs_g)[:, None] * HEAD_DIM + offs_d[None, :],
                mask=g_mask[:, None] & d_mask[None, :], other=0.0) * qk_scale
    q_unscale = _pow2(_pow2_exponent(tl.max(tl.abs(q), axis=1)))          # [BG]
    if STACK:
        q_both = _split_rows(Q, q_row0, qk_scale, 2 * BLOCK_G, BLOCK_G, GROUP, HEAD_DIM,
                             BLOCK_D, BLOCK_G, False)                   # [2BG, BD]: hi; lo
    else:
        q_both = _split_rows(Q, q_row0, qk_scale, BLOCK_G, BLOCK_G, GROUP, HEAD_DIM, BLOCK_D,
                             BLOCK_G, False)                            # [BG, BD]: hi
        q_lo = _split_rows(Q, q_row0, qk_scale, BLOCK_G, BLOCK_G, GROUP, HEAD_DIM, BLOCK_D,
                           0, True)                                     # [BG, BD]: lo

    m_i = tl.full([BLOCK_G], -1.0e30, tl.float32)
    l_acc = tl.zeros([BLOCK_G, BLOCK_N], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    table = BT + b.to(tl.int64) * max_blocks
    for n0 in range(start, end, BLOCK_N):
        pos = n0 + offs_n
        n_mask = pos < end
        block = tl.load(table + pos // PAGE, mask=n_mask, other=0)
        if INDEX64:
            block = block.to(tl.int64)
        row = (block * PAGE + pos % PAGE) * num_kv_heads + kvh        # (slot, kv head)
        kv = row[:, None] * HEAD_DIM + offs_d[None, :]
        if BLOCK_D == HEAD_DIM:
            mask2 = n_mask[:, None]
        else:
            mask2 = n_mask[:, None] & d_mask[None, :]
        k = _int8_to_fp16(tl.load(KC + kv, mask=mask2, other=0), USE_ASM, not EARLY_K)
        v = _int8_to_fp16(tl.load(VC + kv, mask=mask2, other=0), USE_ASM, False)
        ks = tl.load(KS + row, mask=n_mask, other=0.0)
        vs = tl.load(VS + row, mask=n_mask, other=0.0)

        if STACK:
            both = tl.dot(q_both, tl.trans(k))                           # [2BG, BN]
            dots = tl.sum(tl.reshape(both, [2, BLOCK_G, BLOCK_N]), axis=0)
        else:
            dots = tl.dot(q_both, tl.trans(k))
            dots = tl.dot(q_lo, tl.trans(k), dots)
        s = dots * q_unscale[:, None] * ks[None, :]
        s = tl.where(n_mask[None, :], s, float("-inf"))
        # the tile's max score per head and max v_scale (the same in every row), in one pass
        vs_rows = tl.broadcast_to(vs[None, :], [BLOCK_G, BLOCK_N])
        s_max, vs_max = tl.split(tl.max(tl.join(s, vs_rows), axis=1))
        m_new = tl.maximum(m_i, s_max)
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_acc = l_acc * alpha[:, None] + p        # summed over tokens once, after the loop
        m_i = m_new

        # weights p * v_scale, scaled by a power of two into [0, 2), as fp16 hi + lo
        e_v = _pow2_exponent(vs_max)                                         # [BG]
        w = p * vs[None, :] * _pow2(254 - e_v)[:, None]
        w_hi = w.to(tl.float16)
        w_lo = (w - w_hi.to(tl.float32)).to(tl.float16)
        if STACK:
            w2 = tl.reshape(tl.permute(tl.join(w_hi, w_lo), (2, 0, 1)), [2 * BLOCK_G, BLOCK_N])
            o = tl.sum(tl.reshape(tl.dot(w2, v), [2, BLOCK_G, BLOCK_D]), axis=0)
        else:
            o = tl.dot(w_hi, v)
            o = tl.dot(w_lo, v, o)
        acc = acc * alpha[:, None] + o * _pow2(e_v)[:, None]
    l_i = tl.sum(l_acc, axis=1)

    heads = q_row0 + offs_g                                             # [BG]
    out_mask = g_mask[:, None] & d_mask[None, :]
    if n_chunks == 1:   # the whole sequence is in this program
        o_ptrs = OUT + heads[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(o_ptrs, acc / l_i[:, None], mask=out_mask)
    else:
        # partials: [sequence, kv head, chunk] x [GROUP, HEAD_DIM]; (m, l) pairs per head
        pair = (b * num_kv_heads + kvh).to(tl.int64)
        part = (pair * max_chunks + c) * GROUP + offs_g                   # [BG]
        tl.store(WS_ACC + part[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=out_mask)
        tl.store(WS_ML + 2 * part, m_i, mask=g_mask)
        tl.store(WS_ML + 2 * part + 1, l_i, mask=g_mask)
        # the last chunk of (sequence, kv head) to finish merges them all: the barrier orders
        # every thread's stores before the (release) count, and the count's acquire before the
        # merge's loads, which bypass L1 (.cg)
        tl.debug_barrier()
        finished = tl.atomic_add(COUNT + pair, 1, sem="acq_rel")
        tl.debug_barrier()
        if finished == n_chunks - 1:
            tl.store(COUNT + pair, 0)   # ready for the next launch
            m_all = tl.full([BLOCK_G], -1.0e30, tl.float32)
            l_all = tl.zeros([BLOCK_G], dtype=tl.float32)
            o_all = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
            for j in range(n_chunks):
                idx = (pair * max_chunks + j) * GROUP + offs_g
                m_j = tl.load(WS_ML + 2 * idx, mask=g_mask, other=-1.0e30, cache_modifier=".cg")
                l_j = tl.load(WS_ML + 2 * idx + 1, mask=g_mask, other=0.0, cache_modifier=".cg")
                a_j = tl.load(WS_ACC + idx[:, None] * HEAD_DIM + offs_d[None, :], mask=out_mask,
                              other=0.0, cache_modifier=".cg")
                m_new = tl.maximum(m_all, m_j)
                f_all = tl.exp2(m_all - m_new)
                f_j = tl.exp2(m_j - m_new)
                l_all = l_all * f_all + l_j * f_j
                o_all = o_all * f_all[:, None] + a_j * f_j[:, None]
                m_all = m_new
            l_all = tl.where(g_mask, l_all, 1.0)
            o_ptrs = OUT + heads[:, None] * HEAD_DIM + offs_d[None, :]
            tl.store(o_ptrs, o_all / l_all[:, None], mask=out_mask)


_WORKSPACE = {}
_SM_COUNT = {}


def _workspace(device: torch.device, n_acc: int, n_ml: int, n_count: int):
    """Cached buffers, grown on demand (never shrunk): partial accumulators, (max, sum) pairs,
    and one finished-chunks counter per (sequence, KV head), zero between launches (the merging
    program resets its own)."""
    acc, ml, count = _WORKSPACE.get(device, (None, None, None))
    if acc is None or acc.numel() < n_acc or ml.numel() < n_ml:
        acc = torch.empty(max(n_acc, 1 << 16), device=device, dtype=torch.float32)
        ml = torch.empty(max(n_ml, 1 << 12), device=device, dtype=torch.float32)
    if count is None or count.numel() < n_count:
        count = torch.zeros(max(n_count, 1 << 10), device=device, dtype=torch.int32)
    _WORKSPACE[device] = (acc, ml, count)
    return acc, ml, count


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def _use_asm(device: torch.device) -> bool:
    """Inline PTX only where it is compiled for an NVIDIA GPU (not the interpreter, not ROCm)."""
    import os
    return (device.type == "cuda" and torch.version.hip is None
            and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"))


def plan(batch: int, num_kv_heads: int, group: int, head_dim: int, longest: int,
         device: torch.device, config=None, cache_elements: int = 0):
    """Launch parameters for a shape: BLOCK_G (query heads of a group, padded), BLOCK_D,
    BLOCK_N, whether hi/lo halves are stacked, the chunk length, and the launch options."""
    cfg = dict(CONFIG, **(config or {}))
    sms = _sm_count(device)
    if sms == 0 and not cfg["chunk"]:       # (a fixed chunk is a tuning or test variant)
        interp = INTERPRETER_CONFIG
        chunk = interp["min_chunk"] if longest <= interp["split_below"] else longest
        cfg.update(chunk=chunk, block_n=min(interp["max_block_n"], triton.next_power_of_2(chunk)))
    stack = bool(cfg["stack"]) and group <= 8
    # a dot takes at least 16 rows: 2 * 8 stacked, or 16 per half
    block_g = max(8 if stack else 16, triton.next_power_of_2(group))
    block_d = max(16, triton.next_power_of_2(head_dim))
    block_n = max(16, triton.next_power_of_2(cfg["block_n"]))
    num_warps = cfg["num_warps"]
    if block_g * block_d > 2048 and sms:      # many heads x wide heads: spread the accumulator
        num_warps = max(num_warps, 8)
        if block_g * block_d >= 8192:
            block_n = min(block_n, 32)
    if cfg["chunk"]:
        chunk = int(cfg["chunk"])
    else:
        # programs over all chunks of all sequences ~ waves * SMs, if lengths average longest/2
        ideal = (longest * batch * num_kv_heads) // (2 * cfg["waves"] * sms)
        chunk = min(cfg["max_chunk"], max(cfg["min_chunk"], ideal))
    chunk = triton.cdiv(max(chunk, 1), block_n) * block_n
    index64 = cache_elements >= 2**31 if cfg["index64"] is None else bool(cfg["index64"])
    return {"block_g": block_g, "block_d": block_d, "block_n": block_n, "stack": stack,
            "chunk": chunk, "num_warps": num_warps, "num_stages": cfg["num_stages"],
            "use_asm": bool(cfg["asm_cvt"]) and _use_asm(device),
            "early_k": bool(cfg["early_k"]), "index64": index64}


def solve(Q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
          v_scale: torch.Tensor, block_table: torch.Tensor, context_lens: torch.Tensor,
          output: torch.Tensor, batch: int, num_heads: int, num_kv_heads: int, head_dim: int,
          block_size: int, num_blocks: int, max_blocks_per_seq: int):
    if batch == 0:
        return
    group = num_heads // num_kv_heads
    longest = max_blocks_per_seq * block_size          # no host sync on context_lens
    p = plan(batch, num_kv_heads, group, head_dim, longest, Q.device,
             cache_elements=k_cache.numel())
    chunk = p["chunk"]
    max_chunks = triton.cdiv(longest, chunk)
    pairs = batch * num_kv_heads
    ws_acc, ws_ml, count = _workspace(Q.device, pairs * max_chunks * group * head_dim,
                                      2 * pairs * max_chunks * group, pairs)
    _attention_kernel[(max_chunks, num_kv_heads, batch)](
        Q, k_cache, v_cache, k_scale, v_scale, block_table, context_lens, output, ws_acc, ws_ml,
        count, num_heads, num_kv_heads, max_blocks_per_seq, max_chunks, chunk,
        LOG2E / math.sqrt(head_dim), GROUP=group, HEAD_DIM=head_dim, PAGE=block_size,
        BLOCK_G=p["block_g"], BLOCK_N=p["block_n"], BLOCK_D=p["block_d"], STACK=p["stack"],
        USE_ASM=p["use_asm"], EARLY_K=p["early_k"], INDEX64=p["index64"], num_warps=p["num_warps"],
        num_stages=p["num_stages"])
