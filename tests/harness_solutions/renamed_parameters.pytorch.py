"""A correct solution of 96 whose parameters have names of its own: they are bound by position,
as on LeetGPU."""

import math

import torch


def solve(q, k, v, ks, vs, out, h, n, d):
    raw = torch.bmm(k.to(torch.float32), q.unsqueeze(-1)).squeeze(-1)
    weights = torch.softmax(raw * (ks / math.sqrt(d)), dim=-1) * vs
    torch.bmm(weights.unsqueeze(1), v.to(torch.float32), out=out.unsqueeze(1))
