"""A daemon that outlives its grading: a double-forked process in a session of its own whose
main thread exits with raw SYS_exit while another thread runs (it shows as a zombie, state Z,
so a killer that skips zombies leaves it alive). Its thread keeps its name so the test can look
for it afterwards."""
import ctypes
import os
import threading
import time

NAME = b"zombie-daemon-x"
SYS_exit = 60


def _daemon():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, ctypes.c_char_p(NAME), 0, 0, 0)      # PR_SET_NAME

    def linger():
        libc.prctl(15, ctypes.c_char_p(NAME), 0, 0, 0)
        while True:
            time.sleep(0.1)

    threading.Thread(target=linger).start()
    time.sleep(0.2)
    libc.syscall(SYS_exit, 0)                          # the main thread alone exits


def solve(A, B, C, N):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            _daemon()
        os._exit(0)
    time.sleep(1.0)
    C.copy_(A + B)
