"""Challenge 96: decode-phase multi-head attention over an int8 KV cache with per-token scales."""

import ctypes
import math
from typing import Any, Dict, List

import torch

from runner.challenge import ChallengeBase

MAX_HEADS = 64
MAX_SEQ_LEN = 32_768
MIN_HEAD_DIM, MAX_HEAD_DIM = 8, 256


class Challenge(ChallengeBase):
    def __init__(self):
        super().__init__(name="INT8 KV-Cache Attention", atol=1e-3, rtol=1e-3, num_gpus=1,
                         access_tier="free")

    def reference_impl(self, Q: torch.Tensor, K_int8: torch.Tensor, V_int8: torch.Tensor,
                       k_scale: torch.Tensor, v_scale: torch.Tensor, output: torch.Tensor,
                       num_heads: int, seq_len: int, head_dim: int):
        assert Q.shape == (num_heads, head_dim) and output.shape == (num_heads, head_dim)
        assert K_int8.shape == V_int8.shape == (num_heads, seq_len, head_dim)
        assert k_scale.shape == v_scale.shape == (num_heads, seq_len)
        assert K_int8.dtype == V_int8.dtype == torch.int8
        assert Q.dtype == k_scale.dtype == v_scale.dtype == output.dtype == torch.float32

        keys = K_int8.to(torch.float32) * k_scale.unsqueeze(-1)
        values = V_int8.to(torch.float32) * v_scale.unsqueeze(-1)
        # [H, 1, D] @ [H, D, S] -> [H, 1, S]; softmax subtracts the row max, so it cannot overflow
        scores = torch.bmm(Q.unsqueeze(1), keys.transpose(1, 2)) / math.sqrt(head_dim)
        weights = torch.softmax(scores, dim=-1)
        output.copy_(torch.bmm(weights, values).squeeze(1))

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
            "K_int8": (ctypes.POINTER(ctypes.c_int8), "in"),
            "V_int8": (ctypes.POINTER(ctypes.c_int8), "in"),
            "k_scale": (ctypes.POINTER(ctypes.c_float), "in"),
            "v_scale": (ctypes.POINTER(ctypes.c_float), "in"),
            "output": (ctypes.POINTER(ctypes.c_float), "out"),
            "num_heads": (ctypes.c_int, "in"),
            "seq_len": (ctypes.c_int, "in"),
            "head_dim": (ctypes.c_int, "in"),
        }

    # -- test data ------------------------------------------------------------------------------
    def _case(self, num_heads: int, seq_len: int, head_dim: int, seed: int, *,
              q_scale: float = 1.0, k_scale_range=(0.005, 0.05), v_scale_range=(0.005, 0.05),
              zero_query: bool = False, shared_key: bool = False) -> Dict[str, Any]:
        """A random case, drawn on the CPU from ``seed`` and then moved to the device."""
        gen = self.generator(seed)

        def uniform(shape, low, high):
            return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)

        if zero_query:
            q = torch.zeros(num_heads, head_dim, dtype=torch.float32)
        else:
            q = torch.randn(num_heads, head_dim, generator=gen, dtype=torch.float32) * q_scale
        if shared_key:
            # every key is one large vector plus small noise, and Q points along it: the logits
            # are all huge (exp() overflows float32 without the max subtracted) yet close
            # together, so many tokens share the weight
            base = torch.randint(60, 120, (num_heads, 1, head_dim), generator=gen)
            base = base * torch.sign(q).unsqueeze(1).to(base.dtype)
            noise = torch.randint(-1, 2, (num_heads, seq_len, head_dim), generator=gen)
            k = (base + noise).clamp(-127, 127).to(torch.int8)
        else:
            k = torch.randint(-127, 128, (num_heads, seq_len, head_dim), generator=gen,
                              dtype=torch.int8)
        v = torch.randint(-127, 128, (num_heads, seq_len, head_dim), generator=gen, dtype=torch.int8)
        return {
            "Q": self.to_device(q),
            "K_int8": self.to_device(k),
            "V_int8": self.to_device(v),
            "k_scale": self.to_device(uniform((num_heads, seq_len), *k_scale_range)),
            "v_scale": self.to_device(uniform((num_heads, seq_len), *v_scale_range)),
            "output": torch.empty(num_heads, head_dim, device=self.device, dtype=torch.float32),
            "num_heads": num_heads,
            "seq_len": seq_len,
            "head_dim": head_dim,
        }

    def generate_example_test(self) -> Dict[str, Any]:
        # Small enough to work by hand: 2 heads, 3 cached tokens, head_dim 8 (see challenge.html).
        q = torch.tensor([[1.0, 0.0, -1.0, 0.5, 0.0, 2.0, -0.5, 1.0],
                          [0.0, 1.0, 0.0, -1.0, 1.5, 0.0, 0.5, -2.0]])
        k = torch.tensor([[[10, -20, 30, 0, 5, 40, -10, 20],
                           [-5, 15, -25, 10, 0, -30, 20, -10],
                           [0, 0, 10, 20, -20, 10, 0, 30]],
                          [[20, 10, 0, -10, 30, 0, 10, -40],
                           [-10, -20, 5, 15, 0, 25, -5, 10],
                           [5, 5, 5, 5, 5, 5, 5, 5]]], dtype=torch.int8)
        v = torch.tensor([[[100, -50, 0, 25, -100, 50, 10, -10],
                           [-100, 50, 127, -25, 0, 0, 20, 30],
                           [0, 100, -127, 75, 50, -50, 30, 40]],
                          [[10, 20, 30, 40, 50, 60, 70, 80],
                           [-80, -70, -60, -50, -40, -30, -20, -10],
                           [127, -127, 64, -64, 32, -32, 16, -16]]], dtype=torch.int8)
        k_scale = torch.tensor([[0.05, 0.1, 0.02], [0.04, 0.05, 0.1]])
        v_scale = torch.tensor([[0.01, 0.02, 0.01], [0.05, 0.01, 0.02]])
        return {
            "Q": self.to_device(q), "K_int8": self.to_device(k), "V_int8": self.to_device(v),
            "k_scale": self.to_device(k_scale), "v_scale": self.to_device(v_scale),
            "output": torch.empty(2, 8, device=self.device, dtype=torch.float32),
            "num_heads": 2, "seq_len": 3, "head_dim": 8,
        }

    def generate_functional_test(self) -> List[Dict[str, Any]]:
        return [
            self._case(1, 1, 8, seed=1),            # a single cached token: output == V row
            self._case(2, 2, 16, seed=2),           # two tokens
            self._case(4, 7, 32, seed=3),           # odd, non-power-of-two length
            self._case(3, 33, 8, seed=4),           # smallest head_dim
            self._case(2, 100, 256, seed=5),        # largest head_dim
            self._case(64, 129, 64, seed=6),        # the most heads
            self._case(5, 1000, 40, seed=7),        # head_dim a multiple of 8 but not of 16
            self._case(2, 32_768, 64, seed=8),      # the longest sequence
            self._case(8, 257, 128, seed=9, zero_query=True),  # zero query: uniform weights
            # logits in the thousands, a few apart: exp() without the max subtracted overflows
            self._case(4, 300, 64, seed=10, q_scale=3.0, k_scale_range=(0.2, 0.2005),
                       shared_key=True),
            # k_scale and v_scale far apart, so mixing them up fails
            self._case(6, 513, 128, seed=11, k_scale_range=(0.1, 0.2), v_scale_range=(1e-4, 1e-3)),
            self._case(16, 4097, 128, seed=12),     # a realistic decode step
        ]

    def generate_performance_test(self) -> Dict[str, Any]:
        return self._case(32, 8192, 128, seed=96)

    # -- cost model ------------------------------------------------------------------------------
    def bytes_moved(self, test: Dict[str, Any]) -> int:
        h, s, d = test["num_heads"], test["seq_len"], test["head_dim"]
        return 2 * h * s * d + 2 * 4 * h * s + 2 * 4 * h * d  # int8 K,V + fp32 scales + Q,out

    def flops(self, test: Dict[str, Any]) -> int:
        h, s, d = test["num_heads"], test["seq_len"], test["head_dim"]
        return 4 * h * s * d  # a multiply-add per element for Q.K and for P.V
