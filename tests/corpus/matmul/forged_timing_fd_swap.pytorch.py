"""Cheat (the matrix-multiply test challenge): correct, and relays the report pipe through
a pipe of its own, dividing the reported times by 70."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _forgers import swap_report_fd  # noqa: E402


def solve(A, B, C, N):
    C.copy_(A @ B)
    swap_report_fd()
