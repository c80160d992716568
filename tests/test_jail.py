"""The jail's command line (runner/sandbox/jail.py), checked without running it: what it shows,
read-only or writable, and which GPU device nodes a grading gets."""

import os
from pathlib import Path

from runner.sandbox import gpus, jail


def fake_dev(tmp_path: Path, count: int) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] + [f"nvidia{k}" for k in range(count)]:
        (dev / name).touch()
    return dev


def test_a_grading_sees_only_its_own_gpus_nodes(tmp_path):
    dev = fake_dev(tmp_path, 4)
    nodes = [Path(n).name for n in gpus.nodes(2, dev)]
    assert "nvidia2" in nodes and "nvidiactl" in nodes and "nvidia-uvm" in nodes
    assert not {"nvidia0", "nvidia1", "nvidia3"} & set(nodes)


def test_the_gpu_minor_comes_from_the_drivers_pci_table(tmp_path):
    driver = tmp_path / "gpus"
    for minor, bus in ((0, "0000:18:00.0"), (1, "0000:3b:00.0")):
        (driver / bus).mkdir(parents=True)
        (driver / bus / "information").write_text(f"Model: H200\nDevice Minor: {minor}\n")
    assert gpus.minor_of_bus("0000:3b:00.0", driver, fake_dev(tmp_path, 2)) == 1
    assert gpus.minor_of_bus("0000:18:00.0", driver, tmp_path / "dev") == 0


def test_the_view_is_minimal_and_nothing_of_the_host_is_writable(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text("{}")
    solution_dir, challenge_dir = tmp_path / "solution", tmp_path / "medium" / "96_x"
    solution_dir.mkdir()
    challenge_dir.mkdir(parents=True)
    args = jail.command(jail.JailSpec(job_dir=job, mapped={solution_dir: "/submission",
                                                           challenge_dir: "/challenge/medium/96_x"},
                                      disk_bytes=123 << 20), ["python"], {"PATH": "/usr/bin"})
    pairs = [(args[k], args[k + 1]) for k in range(len(args) - 1)]
    assert not [b for a, b in pairs if a == "--bind"], "a host folder is writable in the jail"
    # the one writable place is a tmpfs of the disk limit's size, made by the kernel
    tmpfs = args.index(jail.JAIL_SCRATCH, args.index("--perms"))
    assert args[tmpfs - 1] == "--tmpfs" and args[tmpfs - 5:tmpfs - 3] == ["--size", str(123 << 20)]
    assert ("--ro-bind", str(solution_dir)) in pairs and ("--ro-bind", str(challenge_dir)) in pairs
    assert args[args.index(str(solution_dir)) + 1] == "/submission"
    assert args[args.index(str(job / "job.json")) + 1] == jail.JAIL_JOB_FILE
    shown = [b for a, b in pairs if a in ("--ro-bind", "--bind")]
    assert not any(p in ("/", "/home", "/root", "/etc", "/var", "/sys", "/sys/fs") for p in shown)
    assert not any(p.startswith("/sys/fs") or p.startswith("/sys/class/net") for p in shown)
    assert str(jail.RUNNER_ROOT) not in shown              # only its runner/ package
    assert str(job) not in shown                           # only its job.json, read-only
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                 "--die-with-parent", "--new-session", "--disable-userns", "--clearenv",
                 "--as-pid-1"):   # no init of bwrap's, unfiltered, in the jail (issue 24)
        assert flag in args
    assert args[args.index("--cap-drop") + 1] == "ALL"
    assert args[args.index("--uid") + 1] == str(jail.SANDBOX_UID)


# --- the seccomp filter, loaded in a subprocess (it cannot be unloaded) -----------------------

import random
import subprocess
import sys
import textwrap

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_filtered(code: str, **env) -> str:
    """Run ``code`` in a fresh interpreter that loads the jail's filter first; its stdout."""
    pytest.importorskip("pyseccomp")
    prelude = textwrap.dedent("""
        import ctypes, errno, os, sys
        from runner.sandbox.jail import load_filter
        refused = load_filter()
        assert refused == "", refused
        libc = ctypes.CDLL(None, use_errno=True)

        def call(number, *args):
            result = libc.syscall(ctypes.c_long(number), *[ctypes.c_ulong(a) for a in args])
            return result if result >= 0 else errno.errorcode[ctypes.get_errno()]
    """)
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, **env,
                               # the project first, then what this interpreter was given (a
                               # machine's pyseccomp may come from there)
                               "PYTHONPATH": os.pathsep.join(
                                   [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_outside_matches_exactly_the_values_not_allowed():
    top = 1 << 64
    for allowed in (jail.PERSONALITIES, jail.SOCKET_FAMILIES, jail.SOCKETPAIR_FAMILIES):
        conditions = jail.outside(allowed)

        def refused(value):
            return any(value >= datum if op == "ge" else value & mask == datum
                       for op, datum, mask in conditions)

        samples = {0, 1, top - 1, 2**32 - 1, 2**32, 2**63}
        for a in allowed:
            samples |= {a - 1, a, a + 1}
        samples |= {random.getrandbits(bits) for bits in (4, 8, 20, 32, 64) for _ in range(200)}
        for value in samples:
            if 0 <= value < top:
                assert refused(value) == (value not in allowed), (allowed, hex(value))


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").machine() != "x86_64",
                    reason="x86-64 system call numbers")
def test_the_filter_refuses_io_uring_odd_personalities_and_socket_families():
    out = run_filtered("""
        import socket
        print("io_uring_setup", call(425, 1, 0))            # would return a ring's fd
        print("io_uring_enter", call(426, 0, 0, 0, 0))
        print("io_uring_register", call(427, 0, 0, 0))
        print("personality READ_IMPLIES_EXEC", call(135, 0x0400000))
        print("personality ADDR_NO_RANDOMIZE", call(135, 0x0040000))
        print("personality high bits", call(135, 0x1_00400000))
        print("personality query", call(135, 0xFFFFFFFF))
        print("personality linux", call(135, 0))
        for name, family in (("netlink", 16), ("vsock", 40), ("packet", 17), ("unknown", 0)):
            try:
                socket.socket(family, socket.SOCK_RAW if family in (16, 17) else socket.SOCK_STREAM)
                print("socket", name, "opened")
            except OSError as exc:
                print("socket", name, errno.errorcode[exc.errno])
        for name, family in (("unix", socket.AF_UNIX), ("inet", socket.AF_INET),
                             ("inet6", socket.AF_INET6)):
            try:
                socket.socket(family, socket.SOCK_STREAM).close()
                print("socket", name, "opened")
            except OSError as exc:
                print("socket", name, errno.errorcode[exc.errno])
        a, b = socket.socketpair()
        print("socketpair unix opened")
        print("socketpair inet", call(53, 2, 1, 0, 0))
    """)
    lines = dict(line.rsplit(" ", 1) for line in out.splitlines())
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register",
                 "personality READ_IMPLIES_EXEC", "personality ADDR_NO_RANDOMIZE",
                 "personality high bits"):
        assert lines[name] == "EPERM", out
    assert lines["personality query"].isdigit() and lines["personality linux"].isdigit(), out
    for name in ("netlink", "vsock", "packet", "unknown"):
        assert lines[f"socket {name}"] == "EAFNOSUPPORT", out
    for name in ("unix", "inet", "inet6"):
        assert lines[f"socket {name}"] == "opened", out
    assert lines["socketpair unix"] == "opened" and lines["socketpair inet"] == "EAFNOSUPPORT", out


def test_torch_and_the_triton_interpreter_still_work_under_the_filter():
    pytest.importorskip("triton")
    out = run_filtered("""
        import torch
        import triton
        import triton.language as tl

        @triton.jit
        def add(a, b, c, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < n
            tl.store(c + offs, tl.load(a + offs, mask=mask) + tl.load(b + offs, mask=mask),
                     mask=mask)

        a, b = torch.arange(100.0), torch.ones(100)
        c = torch.empty(100)
        add[(4,)](a, b, c, 100, BLOCK=32)
        print("triton", bool(torch.equal(c, a + 1)))
        print("torch", float((torch.randn(64, 64) @ torch.eye(64)).abs().sum() > 0))
    """, TRITON_INTERPRET="1")
    assert "triton True" in out and "torch 1.0" in out, out
