"""Joins the host's network namespace (setns on /proc/1/ns/net), makes new namespaces, and
tries the other system calls an escape uses: ptrace, BPF, perf events, keyrings, mounts,
another process's memory, kernel modules."""
import ctypes
import errno
import os

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
# x86-64 numbers: the jail's filter refuses each of these
SYSCALLS = {"ptrace": (101, 16, 0), "bpf": (321, 0, 0), "perf_event_open": (298, 0, 0),
            "keyctl": (250, 0, 0), "mount": (165, 0, 0), "process_vm_readv": (310, 1, 0),
            "init_module": (175, 0, 0), "unshare": (272, CLONE_NEWUSER | CLONE_NEWNET, 0),
            "userfaultfd": (323, 0, 0)}


def solve(A, B, C, N):
    libc = ctypes.CDLL(None, use_errno=True)
    for target in ("/proc/1/ns/net", f"/proc/{os.getppid()}/ns/net"):
        try:
            fd = os.open(target, os.O_RDONLY)
        except OSError as exc:
            print("open refused:", target, exc)
            continue
        if libc.setns(fd, CLONE_NEWNET) == 0:
            print("ESCAPED: setns into", target)
        else:
            print("setns refused:", os.strerror(ctypes.get_errno()))
        os.close(fd)
    for name, (number, a, b) in SYSCALLS.items():
        result = libc.syscall(ctypes.c_long(number), ctypes.c_long(a), ctypes.c_long(b), 0, 0, 0)
        err = ctypes.get_errno()
        if result >= 0:
            print(f"ESCAPED: {name} returned {result}")
        else:
            print(f"{name}: {errno.errorcode.get(err, err)}")
            if name != "unshare" and err != errno.EPERM:
                print(f"ESCAPED: {name} was not refused by the filter ({errno.errorcode.get(err)})")
    C.copy_(A + B)
