"""Vector add in Triton, LeetGPU style: a scratch output on device="cuda" and
torch.cuda.synchronize() after the launch."""

import torch
import triton
import triton.language as tl


@triton.jit
def add_kernel(a, b, c, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(c + offs, tl.load(a + offs, mask=mask) + tl.load(b + offs, mask=mask), mask=mask)


def solve(A, B, C, N):
    scratch = torch.empty(N, device="cuda", dtype=torch.float32)
    add_kernel[(triton.cdiv(N, 256),)](A, B, scratch, N, BLOCK=256)
    torch.cuda.synchronize()
    C.copy_(scratch)
