"""A tiny challenge for the judge's tests: C = A + B on a few hundred floats (quick on a CPU)."""

import ctypes
from typing import Any, Dict, List

import torch

from runner.challenge import ChallengeBase


class Challenge(ChallengeBase):
    def __init__(self):
        super().__init__(name="Vector Add", atol=1e-5, rtol=1e-5, num_gpus=1, access_tier="free")

    def reference_impl(self, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, N: int):
        C.copy_(A + B)

    def get_solve_signature(self) -> Dict[str, tuple]:
        return {"A": (ctypes.POINTER(ctypes.c_float), "in"),
                "B": (ctypes.POINTER(ctypes.c_float), "in"),
                "C": (ctypes.POINTER(ctypes.c_float), "out"),
                "N": (ctypes.c_int, "in")}

    def _case(self, n: int, seed: int) -> Dict[str, Any]:
        gen = self.generator(seed)
        return {"A": self.to_device(torch.randn(n, generator=gen)),
                "B": self.to_device(torch.randn(n, generator=gen)),
                "C": torch.empty(n, device=self.device), "N": n}

    def generate_example_test(self) -> Dict[str, Any]:
        return self._case(4, 0)

    def generate_functional_test(self) -> List[Dict[str, Any]]:
        return [self._case(n, k) for k, n in enumerate((1, 7, 256), start=1)]

    def generate_performance_test(self) -> Dict[str, Any]:
        return self._case(1000, 99)
