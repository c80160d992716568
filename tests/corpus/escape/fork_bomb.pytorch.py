"""A bounded fork bomb: 200 processes that sleep, and 1,000 threads."""
import os
import threading
import time


def solve(A, B, C, N):
    children = []
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    for _ in range(1000):
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    time.sleep(20)
    C.copy_(A + B)
