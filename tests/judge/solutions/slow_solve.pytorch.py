# Correct, but each call takes a second (a window for killing a worker while it runs).
import time

import torch


def solve(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, N: int):
    time.sleep(1.0)
    torch.add(A, B, out=C)
