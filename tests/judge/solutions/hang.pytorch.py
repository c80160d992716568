import time


def solve(A, B, C, N):
    while True:
        time.sleep(1)
