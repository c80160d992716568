"""Cheat (the matrix-multiply test challenge): correct, and rewrites the timing report
through the channel object's class (every time divided by 70)."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _forgers import patch_channel  # noqa: E402


def solve(A, B, C, N):
    C.copy_(A @ B)
    patch_channel()
