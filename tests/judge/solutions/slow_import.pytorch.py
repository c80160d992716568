# Takes a while to load (a window for killing a worker while it builds), then is correct.
import time

import torch

time.sleep(float(__import__("os").environ.get("SLOW_S", "3")))


def solve(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, N: int):
    torch.add(A, B, out=C)
