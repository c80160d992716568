"""Sets up an io_uring (issue 24): the calls its rings run in the kernel's workers are not
seen by the seccomp filter, and the ring's fd is the way to them. The jail's filter refuses
io_uring_setup, io_uring_enter and io_uring_register."""
import ctypes
import errno

# x86-64 numbers
SYSCALLS = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}


def solve(A, B, C, N):
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)            # struct io_uring_params, zeroed
    args = {"io_uring_setup": (8, ctypes.addressof(params)), "io_uring_enter": (0, 1, 0, 0),
            "io_uring_register": (0, 0, 0)}
    for name, number in SYSCALLS.items():
        result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args[name]])
        err = ctypes.get_errno()
        if result >= 0:
            print(f"ESCAPED: {name} returned {result}")
        else:
            print(f"{name}: {errno.errorcode.get(err, err)}")
            if err != errno.EPERM:
                print(f"ESCAPED: {name} was not refused by the filter ({errno.errorcode.get(err)})")
    C.copy_(A + B)
