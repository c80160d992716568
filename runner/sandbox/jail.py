"""The jail every grading child runs in: a bubblewrap command line and a seccomp filter.

bubblewrap (``bwrap``, Debian's ``bubblewrap``, the tool Flatpak uses) gives the child new
user, PID, IPC, UTS, network and cgroup namespaces, no capabilities, and a root file system
that holds only what grading needs, read-only: the system's ``/usr`` (with the CUDA toolkit
and compilers), the Python interpreter and its packages, the ``runner`` package, the
challenge folder and the submission's folder. The job folder is the one writable place (it is
also mounted on ``/tmp``). No host ``/proc`` (a new one shows only the jail's processes), no
home, no ``/etc`` beyond the loader's cache and a passwd naming the jail's user, no judge data
or configuration, no other job. On a GPU, only the device nodes of the grading's own GPU.
When the jail's first process dies, the kernel kills every process in its PID namespace.

The seccomp filter (built with libseccomp through ``pyseccomp``) refuses the system calls a
grading never needs and an escape would: namespaces, mounts, tracing, keyrings, BPF,
perf events, other processes' memory, kernel modules.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from runner import environment
from runner.sandbox import gpus
from runner.policy import DISK_BYTES, SHM_BYTES

RUNNER_ROOT = Path(__file__).resolve().parent.parent.parent
SANDBOX_UID = 1000
PASSWD = f"root:x:0:0:root:/nonexistent:/bin/false\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:grading:/tmp:/bin/false\n"
GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n"
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"

# refused with EPERM: nothing a build, an import or a kernel launch needs
DENIED_SYSCALLS = (
    "setns", "unshare", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "acct", "swapon", "swapoff", "reboot", "syslog",
    "quotactl", "lookup_dcookie", "fanotify_init", "iopl", "ioperm", "settimeofday",
    "clock_settime", "adjtimex", "clock_adjtime", "vhangup",
    "io_uring_setup", "io_uring_enter", "io_uring_register",   # its rings run calls unfiltered
)
# personality(): the query (0xffffffff) and the harmless personas Docker's default profile
# allows (PER_LINUX, PER_LINUX32, UNAME26 and both); the rest (READ_IMPLIES_EXEC,
# ADDR_NO_RANDOMIZE, ...) is refused with EPERM. The query is also taken sign-extended to
# 64 bits (a raw syscall of int -1, which the kernel reads as 0xffffffff)
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
# socket() families: AF_UNIX, AF_INET, AF_INET6 (the network namespace is empty anyway);
# netlink, vsock, packet and the others are refused with EAFNOSUPPORT; socketpair(): AF_UNIX
SOCKET_FAMILIES = (1, 2, 10)
SOCKETPAIR_FAMILIES = (1,)
CLONE_NAMESPACE_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                         | 0x20000000 | 0x40000000 | 0x00000080)   # NEWNS..NEWNET, NEWTIME


# where things are inside the jail: fixed names, so nothing in its view names the host's folders
JAIL_JOB_FILE = "/grading/job.json"
JAIL_SCRATCH = "/tmp"                     # the one writable place: a size-capped tmpfs
JAIL_WORK = "/tmp/work"                   # the child's working folder
JAIL_HOME = "/tmp/home"


@dataclass
class JailSpec:
    """What one grading's jail shows and allows. Nothing of the host is writable in it: the
    child writes only into a tmpfs of ``disk_bytes`` (and /dev/shm), which the kernel caps and
    which vanishes with the jail's mount namespace; the trusted side never looks inside."""

    job_dir: Path                        # the parent's own folder: job.json, passwd, group
    read_only: List[Path] = field(default_factory=list)   # folders shown read-only where they are
    mapped: Dict[Path, str] = field(default_factory=dict)  # host folder -> its path in the jail
    writable: List[Path] = field(default_factory=list)    # extra writable folders (tests only)
    gpu_minor: Optional[int] = None      # /dev/nvidia<minor> of the grading's GPU
    gpu: bool = False                    # expose the GPU's device nodes and driver libraries
    shm_bytes: int = SHM_BYTES
    disk_bytes: int = DISK_BYTES         # the size of the writable tmpfs


def bwrap_path() -> Optional[str]:
    """``$GRADER_BWRAP`` (a bubblewrap unpacked somewhere of its own), else bwrap on PATH."""
    override = environment.bwrap_override()
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def probe() -> Tuple[bool, str]:
    """(usable, reason): whether bwrap is here and this kernel lets it make its namespaces."""
    path = bwrap_path()
    if not path:
        return False, f"bubblewrap (bwrap) was not found; {INSTALL_HINT}"
    command = [path, "--unshare-all", "--unshare-user", "--die-with-parent", "--cap-drop", "ALL",
               *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap could not be run ({exc})"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        return False, (f"bubblewrap cannot create its namespaces here "
                       f"({why[-1] if why else f'exit {done.returncode}'}); user namespaces may "
                       f"be disabled (sysctl kernel.unprivileged_userns_clone, "
                       f"user.max_user_namespaces, or an AppArmor restriction)")
    return True, "bubblewrap"


def isolation_refusal() -> str:
    """Why untrusted code may not be graded here ('' when it may): no jail, or no cgroup for
    the kernel to enforce a job's memory and tasks (the judge needs both)."""
    from runner.sandbox import cgroups   # lazy: only the judge asks

    usable, why = probe()
    if not usable:
        return f"no jail can be made ({why})"
    usable, why = cgroups.availability()
    if not usable:
        return f"the kernel cannot enforce a job's memory and processes ({why})"
    return ""


def _system_binds() -> List[str]:
    args: List[str] = []
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    return args


def python_paths() -> List[Path]:
    """Folders the interpreter needs: its prefixes and every sys.path folder outside them,
    except the project's own root and anything above it (which may hold judge data)."""
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
                Path(sys.executable).resolve().parent.parent}
    out = set(prefixes)
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if not path.is_dir() or path == RUNNER_ROOT or path in RUNNER_ROOT.parents:
            continue
        if any(p == path or p in path.parents for p in prefixes):
            continue
        if RUNNER_ROOT in path.parents and path.parent == RUNNER_ROOT:
            continue        # a folder of the project's (judge data, tests): never
        out.add(path)
    return sorted(out)


def cuda_paths() -> List[Path]:
    """The CUDA toolkit (for nvcc) and the folder of the driver library, where outside /usr."""
    out: List[Path] = []
    for home in environment.cuda_homes():
        if Path(home).is_dir():
            out.append(Path(home).resolve())
    nvcc = shutil.which("nvcc")
    if nvcc:
        out.append(Path(nvcc).resolve().parent.parent)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "libcuda.so" in line or "libnvidia-" in line:
                    out.append(Path(line.split()[-1]).parent)
    except OSError:
        pass
    for entry in environment.library_path():
        if Path(entry).is_dir():
            out.append(Path(entry).resolve())
    return sorted({p for p in out if not str(p).startswith("/usr/") and p != Path("/")})


def _seccomp_module():
    try:
        import pyseccomp as seccomp
    except ImportError:
        try:
            import seccomp  # libseccomp's own bindings (Debian: python3-seccomp)
        except ImportError:
            return None
    return seccomp


def build_filter():
    """The jail's filter as a libseccomp ``SyscallFilter`` (None without libseccomp)."""
    seccomp = _seccomp_module()
    if seccomp is None:
        return None
    filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            filt.add_rule(deny, name)
        except Exception:  # noqa: BLE001 - a call this kernel/arch does not have
            continue
    for bit in range(32):   # clone() asking for any new namespace
        flag = 1 << bit
        if CLONE_NAMESPACE_FLAGS & flag:
            filt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, where a filter cannot read them: ENOSYS makes glibc
    # fall back to clone, whose flags are checked above (what Docker and Flatpak do)
    filt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for name, allowed, action in (
            ("personality", PERSONALITIES, deny),
            ("socket", SOCKET_FAMILIES, seccomp.ERRNO(errno.EAFNOSUPPORT)),
            ("socketpair", SOCKETPAIR_FAMILIES, seccomp.ERRNO(errno.EAFNOSUPPORT))):
        for op, datum, mask in outside(allowed):
            arg = (seccomp.Arg(0, seccomp.GE, datum) if op == "ge"
                   else seccomp.Arg(0, seccomp.MASKED_EQ, mask, datum))
            filt.add_rule(action, name, arg)
    return filt


def outside(allowed: Sequence[int]) -> List[Tuple[str, int, int]]:
    """Conditions on a 64-bit argument that together match every value not in ``allowed``:
    ("eq", datum, mask) for an aligned block (MASKED_EQ), ("ge", datum, 0) for the values from
    ``datum`` up. libseccomp takes one comparison per argument in a rule, and a rule whose
    action is the default (allow) not at all: refusing every value but a few takes one rule per
    block of the values between them. The whole 64 bits are compared, so a value with its upper
    half set (which the kernel drops for an int argument) is refused too."""
    top = 1 << 64
    out: List[Tuple[str, int, int]] = []
    low = 0
    for value in sorted(set(allowed)) + [top]:
        if low < value == top:
            out.append(("ge", low, 0))
        else:
            while low < value:
                size = (low & -low) if low else top
                while size > value - low:
                    size >>= 1
                out.append(("eq", low, (top - size) & (top - 1)))
                low += size
        low = value + 1
    return out


def load_filter() -> str:
    """Install the filter on this process (the jail's first process, before any submission
    code runs); '' when done, else why not. Loaded here rather than by bwrap so that the
    kernel's speculative-store-bypass mitigation, which a plain seccomp load switches on and
    which slows Python by half, stays as it is (libseccomp's CTL_SSB)."""
    try:
        filt = build_filter()
        if filt is None:
            return "no seccomp filter (pip install pyseccomp)"
        try:
            filt.set_attr(7, 1)      # SCMP_FLTATR_CTL_SSB: SECCOMP_FILTER_FLAG_SPEC_ALLOW
        except Exception:  # noqa: BLE001 - an older libseccomp: the mitigation stays on
            pass
        filt.load()
        return ""
    except Exception as exc:  # noqa: BLE001 - libseccomp missing or refusing
        return f"no seccomp filter ({str(exc)[:120]})"


def command(spec: JailSpec, inner: Sequence[str], env: Dict[str, str]) -> List[str]:
    """The bwrap command line that runs ``inner`` in the jail described by ``spec``."""
    bwrap = bwrap_path()
    assert bwrap, "probe() first"
    args = [bwrap, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "grading", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--disable-userns", "--as-pid-1"]
    args += _system_binds()
    for name in ETC_FILES:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    args += passwd_files(spec.job_dir)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(spec.shm_bytes), "--tmpfs", "/dev/shm"]
    args += sys_view(spec.gpu)
    # the one writable place, before anything that may lie below /tmp is shown
    args += ["--size", str(spec.disk_bytes), "--perms", "0700", "--tmpfs", JAIL_SCRATCH,
             "--dir", JAIL_WORK, "--dir", JAIL_HOME]
    shown: List[Path] = []
    for path in [*python_paths(), RUNNER_ROOT / "runner", *spec.read_only,
                 *(cuda_paths() if spec.gpu else [])]:
        path = Path(path)
        if path.exists() and not any(p == path or p in path.parents for p in shown):
            shown.append(path)
    for path in shown:
        args += ["--ro-bind", str(path), str(path)]
    for path, inside in spec.mapped.items():
        args += ["--ro-bind", str(path), inside]
    args += ["--ro-bind", str(spec.job_dir / "job.json"), JAIL_JOB_FILE]
    for path in spec.writable:
        args += ["--bind", str(path), str(path)]
    if spec.gpu:
        for node in gpus.nodes(spec.gpu_minor):
            args += ["--dev-bind", node, node]
    args += ["--chdir", JAIL_WORK]
    args += ["--clearenv"]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return args + ["--", *inner]


# the parts of /sys a grading reads: CPU and NUMA topology (torch, OpenMP), and on a GPU the
# PCI devices and the driver's modules (the CUDA driver reads them); never the cgroup tree,
# the network interfaces or the rest of the host's devices
SYS_CPU = ("/sys/devices/system/cpu", "/sys/devices/system/node")
SYS_GPU = ("/sys/bus/pci", "/sys/devices", "/sys/module/nvidia", "/sys/module/nvidia_uvm",
           "/sys/class/drm")
SYS_HIDDEN = ("/sys/devices/virtual/net",)


def sys_view(gpu: bool) -> List[str]:
    """bwrap arguments for the jail's /sys: only what the grading reads, read-only."""
    args: List[str] = []
    shown = [p for p in (SYS_GPU if gpu else SYS_CPU) if Path(p).exists()]
    if gpu:
        shown += [p for p in SYS_CPU if not any(p.startswith(s + "/") for s in shown)]
    for path in shown:
        args += ["--ro-bind", path, path]
    for path in SYS_HIDDEN:
        if Path(path).exists() and any(path.startswith(s + "/") for s in shown):
            args += ["--tmpfs", path, "--remount-ro", path]
    return args


def passwd_files(job_dir: Path) -> List[str]:
    """bwrap arguments that give the jail an /etc/passwd and /etc/group naming its user."""
    (job_dir / "etc").mkdir(exist_ok=True)
    (job_dir / "etc" / "passwd").write_text(PASSWD)
    (job_dir / "etc" / "group").write_text(GROUP)
    return ["--ro-bind", str(job_dir / "etc" / "passwd"), "/etc/passwd",
            "--ro-bind", str(job_dir / "etc" / "group"), "/etc/group"]


def libc_unshare_net() -> str:
    """Without bwrap: enter an empty network namespace (before any thread starts)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        return f"network not isolated ({exc})"
    flags = 0x40000000 if os.geteuid() == 0 else 0x10000000 | 0x40000000
    if libc.unshare(flags) == 0:
        return ""
    return f"network not isolated: unshare failed ({os.strerror(ctypes.get_errno())})"
