"""Challenge 98: batched decode attention over a paged int8 KV cache, with grouped-query heads.

Each sequence b of the batch has context_lens[b] cached tokens; token p of it lives in physical
block block_table[b, p // block_size] at offset p % block_size. Query head h reads KV head
h // (num_heads // num_kv_heads). Q and the output are float32 (as in challenge 96): the cache
is what has to be streamed, and float32 keeps the tolerance about the kernel, not about rounding
of the query.
"""

import ctypes
import math
from typing import Any, Dict, List, Optional, Sequence

import torch

from runner.challenge import ChallengeBase

MAX_BATCH = 256
MAX_HEADS = 64
MAX_CONTEXT = 32_768
MIN_HEAD_DIM, MAX_HEAD_DIM = 8, 256
MAX_BLOCK_SIZE = 256


class Challenge(ChallengeBase):
    def __init__(self):
        super().__init__(name="Paged INT8 Decode Attention (GQA)", atol=1e-3, rtol=1e-3,
                         num_gpus=1, access_tier="free")

    def reference_impl(self, Q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                       k_scale: torch.Tensor, v_scale: torch.Tensor, block_table: torch.Tensor,
                       context_lens: torch.Tensor, output: torch.Tensor, batch: int,
                       num_heads: int, num_kv_heads: int, head_dim: int, block_size: int,
                       num_blocks: int, max_blocks_per_seq: int):
        cache_shape = (num_blocks, block_size, num_kv_heads, head_dim)
        assert Q.shape == output.shape == (batch, num_heads, head_dim)
        assert k_cache.shape == v_cache.shape == cache_shape
        assert k_scale.shape == v_scale.shape == cache_shape[:3]
        assert block_table.shape == (batch, max_blocks_per_seq)
        assert context_lens.shape == (batch,)
        assert k_cache.dtype == v_cache.dtype == torch.int8
        assert block_table.dtype == context_lens.dtype == torch.int32
        assert num_heads % num_kv_heads == 0
        group = num_heads // num_kv_heads
        dtype = Q.dtype   # float32 (a float64 Q makes the whole computation float64)

        for b, length in enumerate(context_lens.tolist()):
            used = -(-length // block_size)
            blocks = block_table[b, :used].long()
            # [used, block_size, KVH, D] -> [tokens, KVH, D], dequantized
            k = (k_cache[blocks].to(dtype) * k_scale[blocks].to(dtype).unsqueeze(-1))
            v = (v_cache[blocks].to(dtype) * v_scale[blocks].to(dtype).unsqueeze(-1))
            k = k.reshape(used * block_size, num_kv_heads, head_dim)[:length]
            v = v.reshape(used * block_size, num_kv_heads, head_dim)[:length]
            q = Q[b].reshape(num_kv_heads, group, head_dim)
            scores = torch.einsum("kgd,skd->kgs", q, k) / math.sqrt(head_dim)
            weights = torch.softmax(scores, dim=-1)            # subtracts the row max
            out = torch.einsum("kgs,skd->kgd", weights, v)
            output[b].copy_(out.reshape(num_heads, head_dim))

    def perturb_inputs(self, args: Dict[str, Any], base: Dict[str, Any],
                       generator: torch.Generator) -> None:
        """Every query element scaled by its own factor in [0.5, 1.5): every score, so every
        output, changes; K and V (the bulk) are left alone, so the change costs one pass
        over Q."""
        factors = torch.rand(base["Q"].shape, generator=generator, device=generator.device)
        torch.mul(base["Q"], factors.add_(0.5), out=args["Q"])

    def get_solve_signature(self) -> Dict[str, tuple]:
        return {
            "Q": (ctypes.POINTER(ctypes.c_float), "in"),
            "k_cache": (ctypes.POINTER(ctypes.c_int8), "in"),
            "v_cache": (ctypes.POINTER(ctypes.c_int8), "in"),
            "k_scale": (ctypes.POINTER(ctypes.c_float), "in"),
            "v_scale": (ctypes.POINTER(ctypes.c_float), "in"),
            "block_table": (ctypes.POINTER(ctypes.c_int32), "in"),
            "context_lens": (ctypes.POINTER(ctypes.c_int32), "in"),
            "output": (ctypes.POINTER(ctypes.c_float), "out"),
            "batch": (ctypes.c_int, "in"),
            "num_heads": (ctypes.c_int, "in"),
            "num_kv_heads": (ctypes.c_int, "in"),
            "head_dim": (ctypes.c_int, "in"),
            "block_size": (ctypes.c_int, "in"),
            "num_blocks": (ctypes.c_int, "in"),
            "max_blocks_per_seq": (ctypes.c_int, "in"),
        }

    # -- test data ------------------------------------------------------------------------------
    def _case(self, seed: int, lens: Sequence[int], num_heads: int, num_kv_heads: int,
              head_dim: int, block_size: int, *, shared_prefix_blocks: int = 0,
              extra_columns: int = 1, spare_blocks: int = 3, padding: str = "random",
              shuffled: bool = True, q_scale: float = 1.0, k_scale_range=(0.005, 0.05),
              v_scale_range=(0.005, 0.05), large_logits: bool = False,
              columns: Optional[int] = None) -> Dict[str, Any]:
        """A random case drawn on the CPU from ``seed``.

        Sequence b takes ceil(lens[b] / block_size) blocks from a pool of physical blocks
        (shuffled unless ``shuffled`` is False); the first ``shared_prefix_blocks`` of every
        sequence are the same physical blocks (a shared prompt prefix). Every block, including
        spare ones and the unused tail of each last block, holds random int8 data, so reading a
        token past a sequence's length changes the answer. Block-table entries past a
        sequence's last block are ``padding``: "random" (valid block numbers that must not be
        used) or "minus_one". The table has ``columns`` columns (default: the most blocks a
        sequence uses, plus ``extra_columns``).
        """
        gen = self.generator(seed)
        batch, group = len(lens), num_heads // num_kv_heads
        used = [-(-n // block_size) for n in lens]
        shared = min([shared_prefix_blocks] + used)
        needed = shared + sum(u - shared for u in used)
        num_blocks = needed + spare_blocks
        order = (torch.randperm(num_blocks, generator=gen) if shuffled
                 else torch.arange(num_blocks)).tolist()
        prefix, rest = order[:shared], order[shared:]
        max_blocks = columns if columns is not None else max(used) + extra_columns
        assert max_blocks >= max(used)
        if padding == "random":
            table = torch.randint(0, num_blocks, (batch, max_blocks), generator=gen)
        else:
            table = torch.full((batch, max_blocks), -1)
        for b, u in enumerate(used):
            own, rest = rest[:u - shared], rest[u - shared:]
            table[b, :u] = torch.tensor(prefix + own, dtype=torch.long)

        shape = (num_blocks, block_size, num_kv_heads, head_dim)
        q = torch.randn(batch, num_heads, head_dim, generator=gen) * q_scale
        if large_logits:
            # every key is one large vector per KV head plus noise, and the queries of its group
            # point along it: logits in the hundreds (exp() overflows float32 unless the max is
            # subtracted), yet close together, so many tokens share the weight
            sign = torch.randint(0, 2, (num_kv_heads, head_dim), generator=gen) * 2 - 1
            base = torch.randint(60, 120, (num_kv_heads, head_dim), generator=gen) * sign
            noise = torch.randint(-1, 2, shape, generator=gen)
            k = (base + noise).clamp(-127, 127).to(torch.int8)
            q = q.abs() * sign.repeat_interleave(group, dim=0).to(q.dtype)
        else:
            k = torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8)
        v = torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8)

        def uniform(low, high):
            return low + (high - low) * torch.rand(shape[:3], generator=gen)

        return {
            "Q": self.to_device(q.to(torch.float32)),
            "k_cache": self.to_device(k), "v_cache": self.to_device(v),
            "k_scale": self.to_device(uniform(*k_scale_range)),
            "v_scale": self.to_device(uniform(*v_scale_range)),
            "block_table": self.to_device(table.to(torch.int32)),
            "context_lens": self.to_device(torch.tensor(lens, dtype=torch.int32)),
            "output": torch.empty(batch, num_heads, head_dim, device=self.device,
                                  dtype=torch.float32),
            "batch": batch, "num_heads": num_heads, "num_kv_heads": num_kv_heads,
            "head_dim": head_dim, "block_size": block_size, "num_blocks": num_blocks,
            "max_blocks_per_seq": max_blocks,
        }

    def generate_example_test(self) -> Dict[str, Any]:
        # 2 sequences (3 and 4 tokens) sharing their first block, 2 query heads over 1 KV head,
        # head_dim 8, blocks of 2 tokens (see challenge.html)
        q = torch.tensor([[[2.0, -1.5, 1.0, -2.0, 1.5, 0.0, -1.5, 1.5],
                           [-0.5, -1.0, 1.0, -1.0, 0.5, 1.5, 2.0, 0.0]],
                          [[2.0, 1.0, 1.0, 0.0, 0.5, -0.5, 0.0, -0.5],
                           [0.5, 1.5, 2.0, -0.5, 0.5, 1.0, -2.0, -2.0]]])
        k = torch.tensor([[[4, -7, 21, 2, 6, -7, 27, -15], [-14, -29, -24, -13, -19, -24, -7, -5]],
                          [[24, 24, 24, -8, 20, 16, -12, 17], [-13, -8, -25, 20, -4, 13, 17, -30]],
                          [[-18, 7, -22, 24, 3, 17, 29, -3], [28, 18, -30, -23, -11, -16, 11, 10]],
                          [[7, 24, -26, -8, 3, -26, 6, -19], [-2, -28, 14, -24, 16, 5, -22, 19]]],
                         dtype=torch.int8).unsqueeze(2)
        v = torch.tensor([[[-82, 5, -31, 50, -46, 66, 80, 74], [-15, 92, 19, -43, -16, -53, -46, -46]],
                          [[11, -96, 30, -43, 90, -52, -57, -4], [78, -92, -77, 22, -6, -29, 35, 45]],
                          [[21, 74, 78, -6, -100, -20, -2, 1], [20, -93, 51, -78, 33, -25, -94, -12]],
                          [[-79, -41, 25, 57, -75, -44, -98, -48], [-84, -18, -63, 10, 39, -36, 99, 12]]],
                         dtype=torch.int8).unsqueeze(2)
        k_scale = torch.tensor([[0.03, 0.04], [0.04, 0.03], [0.01, 0.01], [0.02, 0.04]]).unsqueeze(2)
        v_scale = torch.tensor([[0.01, 0.04], [0.01, 0.01], [0.03, 0.04], [0.05, 0.01]]).unsqueeze(2)
        block_table = torch.tensor([[2, 0, -1], [2, 3, -1]], dtype=torch.int32)
        context_lens = torch.tensor([3, 4], dtype=torch.int32)
        return {
            "Q": self.to_device(q), "k_cache": self.to_device(k), "v_cache": self.to_device(v),
            "k_scale": self.to_device(k_scale), "v_scale": self.to_device(v_scale),
            "block_table": self.to_device(block_table),
            "context_lens": self.to_device(context_lens),
            "output": torch.empty(2, 2, 8, device=self.device, dtype=torch.float32),
            "batch": 2, "num_heads": 2, "num_kv_heads": 1, "head_dim": 8, "block_size": 2,
            "num_blocks": 4, "max_blocks_per_seq": 3,
        }

    def generate_functional_test(self) -> List[Dict[str, Any]]:
        return [
            # one token, one head, one block: the output is that token's value row
            self._case(1, [1], 1, 1, 64, 16, spare_blocks=0, extra_columns=0),
            # lengths that are not multiples of the block size; GQA 4; -1 padding in the table
            self._case(2, [17, 33, 5], 8, 2, 128, 16, padding="minus_one"),
            # very uneven lengths in one batch; MQA (8 query heads over 1 KV head)
            self._case(3, [1, 3000, 7, 250], 8, 1, 64, 16),
            # prefix sharing: all four sequences start with the same 4 physical blocks
            self._case(4, [300, 280, 513, 64], 16, 2, 128, 16, shared_prefix_blocks=4),
            # block_size 256, GQA 1 (multi-head attention)
            self._case(5, [700, 256, 1], 4, 4, 128, 256),
            # head_dim 256, GQA 4, blocks in pool order (no shuffling)
            self._case(6, [100, 37], 8, 2, 256, 16, shuffled=False),
            # GQA 8 with 32 heads, a wider table than needed
            self._case(7, [130, 600, 2, 411, 64, 65, 16, 255], 32, 4, 128, 16, extra_columns=5),
            # logits in the hundreds: exp() without the max subtracted overflows float32
            self._case(8, [200, 90], 4, 1, 64, 16, q_scale=3.0, k_scale_range=(0.2, 0.2005),
                       large_logits=True),
            # k_scale and v_scale far apart; GQA 3; head_dim 40; block_size 5
            self._case(9, [129, 64, 11], 12, 4, 40, 5, k_scale_range=(0.1, 0.2),
                       v_scale_range=(1e-4, 1e-3)),
            # the smallest head_dim and block_size; 3 KV heads
            self._case(10, [5, 1, 9], 6, 3, 8, 1, padding="minus_one"),
            # the most query heads (64 over 8)
            self._case(11, [77, 1025], 64, 8, 64, 16),
            # a realistic small batch: 16 sequences up to 2,048 tokens, the perf case's heads
            self._case(12, self._lengths(12, 16, 2048), 32, 8, 128, 16, spare_blocks=64),
        ]

    def _lengths(self, seed: int, batch: int, longest: int) -> List[int]:
        """Context lengths drawn uniformly from [1, longest] by a generator of their own, so
        the sizes (and the bytes a solution must read) do not change with the grading seed."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(1, longest + 1, (batch,), generator=gen).tolist()

    def generate_performance_test(self) -> Dict[str, Any]:
        # 64 sequences of 1 to 8,192 tokens, 32 query heads over 8 KV heads, head_dim 128,
        # blocks of 16 tokens from a shuffled pool with 1,024 spare blocks
        return self._case(98, self._lengths(98, 64, 8192), 32, 8, 128, 16, spare_blocks=1024,
                          columns=512)

    # -- cost model ------------------------------------------------------------------------------
    def bytes_moved(self, test: Dict[str, Any]) -> int:
        """Each sequence's tokens once per KV head (int8 K and V rows, float32 scales), its used
        block-table entries, the context lengths, Q and the output."""
        lens = test["context_lens"].tolist()
        bs, kvh, d = test["block_size"], test["num_kv_heads"], test["head_dim"]
        tokens = sum(lens)
        blocks = sum(-(-n // bs) for n in lens)
        return (tokens * kvh * 2 * (d + 4) + 4 * blocks + 4 * len(lens)
                + 2 * 4 * test["batch"] * test["num_heads"] * d)

    def flops(self, test: Dict[str, Any]) -> int:
        """A multiply-add per element for Q.K and for P.V, for every query head."""
        return 4 * sum(test["context_lens"].tolist()) * test["num_heads"] * test["head_dim"]
