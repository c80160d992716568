"""Matrix multiply, wrong on the 7 x 7 functional test; records every N it is called with in
the file named by $CALLS_LOG (when set), so a test can see which cases ran."""

import os


def solve(A, B, C, N):
    log = os.environ.get("CALLS_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{N}\n")
    C.copy_(A @ B)
    if N == 7:
        C.zero_()
