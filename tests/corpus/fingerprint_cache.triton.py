"""Cheat (challenge 96): a fast correct Triton solution (staged beside this file as
_honest_triton.py) plus a cache: for each set of K/V buffers it keeps a fingerprint (the first
256 elements of Q, K, V and k_scale) and the output of its last call; a one-program Triton
kernel compares the fingerprints, and on a match the stored output is copied back and the
attention kernels are skipped."""
import os
import sys

import torch
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _honest_triton import solve as honest  # noqa: E402

_cache = {}
CACHE = os.environ.get("NO_CACHE") is None


@triton.jit
def _differs(a, b, flag, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(a + offs, mask=offs < n, other=0.0)
    y = tl.load(b + offs, mask=offs < n, other=0.0)
    tl.store(flag, tl.sum((x != y).to(tl.int32), axis=0))


def _fingerprint(Q, K_int8, V_int8, k_scale):
    return torch.cat([Q.reshape(-1)[:256], K_int8.reshape(-1)[:256].float(),
                      V_int8.reshape(-1)[:256].float(), k_scale.reshape(-1)[:256]])


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    key = (K_int8.data_ptr(), V_int8.data_ptr(), tuple(output.shape))
    if CACHE and seq_len >= 256:
        fp = _fingerprint(Q, K_int8, V_int8, k_scale)
        hit = _cache.get(key)
        if hit is not None:
            flag = torch.empty(1, dtype=torch.int32, device=Q.device)
            _differs[(1,)](fp, hit[0], flag, fp.numel(), BLOCK=1024)
            if int(flag.item()) == 0:
                output.copy_(hit[1])
                return
        honest(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim)
        _cache[key] = (fp, output.clone())
        return
    honest(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim)
