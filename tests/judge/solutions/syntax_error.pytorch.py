def solve(A, B, C, N)
    pass
