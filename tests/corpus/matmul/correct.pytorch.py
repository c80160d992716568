"""An honest solution of the matrix-multiply test challenge."""


def solve(A, B, C, N):
    C.copy_(A @ B)
