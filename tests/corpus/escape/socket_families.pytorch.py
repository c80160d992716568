"""Opens sockets of the families a grading never needs (issue 24): netlink (the kernel's
routing, audit and uevent interfaces, a large attack surface), vsock (the hypervisor's side
of a VM) and packet (raw frames). The jail's filter refuses every family but AF_UNIX,
AF_INET and AF_INET6 with EAFNOSUPPORT; a socketpair only of AF_UNIX."""
import errno
import socket

FAMILIES = {"netlink": (16, socket.SOCK_RAW), "vsock": (40, socket.SOCK_STREAM),
            "packet": (17, socket.SOCK_RAW), "bluetooth": (31, socket.SOCK_STREAM),
            "alg": (38, socket.SOCK_SEQPACKET)}


def solve(A, B, C, N):
    for name, (family, kind) in FAMILIES.items():
        try:
            socket.socket(family, kind).close()
            print(f"ESCAPED: a {name} socket was opened")
        except OSError as exc:
            print(f"{name}: {errno.errorcode.get(exc.errno, exc.errno)}")
            if exc.errno != errno.EAFNOSUPPORT:
                print(f"ESCAPED: the {name} socket was not refused by the filter")
    try:
        socket.socketpair(socket.AF_INET).close()
        print("ESCAPED: an AF_INET socketpair")
    except OSError as exc:
        print(f"socketpair inet: {errno.errorcode.get(exc.errno, exc.errno)}")
    a, b = socket.socketpair()
    a.close(), b.close()
    print("socketpair unix: opened")
    C.copy_(A + B)
