"""Vector add written the way LeetGPU code often is: a scratch buffer made with device="cuda",
a .cuda() move, and torch.cuda.synchronize() inside solve."""

import torch


def solve(A, B, C, N):
    scratch = torch.empty(N, device="cuda")
    torch.add(A, B, out=scratch)
    ones = torch.ones(1).cuda()
    C.copy_(scratch * ones)
    torch.cuda.synchronize()
