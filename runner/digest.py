"""Binding digests of output tensors: a commitment the child makes before it learns which of
its runs the parent will check.

Each output's bytes are cut into blocks of eight 32-bit words; each block is folded through a
chain of multiply-xorshift steps (integer arithmetic, the same bits on the CPU and the GPU),
and the blocks' values are hashed in order with BLAKE2b. Changing any byte changes the digest;
making a different output (within the tolerance) match a given digest means a 64-bit preimage
search per block. The GPU part is a few passes over the outputs, batched over many runs.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Sequence

import torch

_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93,
                0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3)
_WORDS = 8


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _blocks(t: torch.Tensor, runs: int) -> torch.Tensor:
    """[runs, blocks, 8] int64 words of ``t`` ([runs, ...] of one output per run)."""
    flat = t.contiguous().reshape(runs, -1).view(torch.uint8)
    pad = (-flat.shape[1]) % (4 * _WORDS)
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.view(torch.int32).to(torch.int64).view(runs, -1, _WORDS)


def fold(stacked: torch.Tensor, runs: int) -> torch.Tensor:
    """[runs, blocks] block values of ``stacked`` (one output of every run, stacked)."""
    words = _blocks(stacked, runs)
    acc = torch.arange(words.shape[1], device=words.device, dtype=torch.int64)
    acc = (acc * _signed(0xD1B54A32D192ED03)).expand(runs, -1).clone()
    for j, mult in enumerate(_MULTIPLIERS):
        acc = (acc ^ words[:, :, j]) * _signed(mult)
        acc = acc ^ (acc >> 29)
    return acc


def digest_many(runs: Sequence[Dict[str, torch.Tensor]]) -> List[str]:
    """One digest per run of its outputs (the same names and shapes in every run)."""
    if not runs:
        return []
    hashes = [hashlib.blake2b(digest_size=16) for _ in runs]
    for name in sorted(runs[0]):
        stacked = torch.stack([r[name].detach() for r in runs])
        values = fold(stacked, len(runs)).cpu().numpy()
        for k, h in enumerate(hashes):
            h.update(name.encode() + b"\0")
            h.update(values[k].tobytes())
    return [h.hexdigest() for h in hashes]


def digest(outputs: Dict[str, torch.Tensor]) -> str:
    return digest_many([outputs])[0]
