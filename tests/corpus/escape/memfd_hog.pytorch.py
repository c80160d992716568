"""Holds memory the watcher's RSS count never sees: pages of memfds that are never mapped
(and a file on the jail's tmpfs), 3.8 GiB of them, then answers correctly. Once accepted with
`--memory-limit 1`; the kernel's memory cgroup of the job counts these pages."""
import os

CHUNK = 64 << 20
TOTAL = int(3.8 * 2**30)


def solve(A, B, C, N):
    held, block = [], b"\x5a" * CHUNK
    for k in range(TOTAL // CHUNK):
        fd = os.memfd_create(f"hog{k}")
        os.write(fd, block)
        held.append(fd)
        if k % 8 == 0:
            print(f"holding {len(held) * CHUNK >> 20} MiB in memfds", flush=True)
    print(f"HELD {len(held) * CHUNK >> 20} MiB", flush=True)
    C.copy_(A + B)
