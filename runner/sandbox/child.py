"""The child process of a grading: ``python -m runner.sandbox.child JOB_JSON``.

Before any submission code is imported it moves its pipes to descriptor numbers of its own
choosing (the numbers are on no command line), captures the functions that write reports and
read commands, sets resource limits, makes itself a subreaper that dies with its parent, and
(without a jail) leaves the network; then it runs :func:`runner.execute.execute`. In the jail
it starts as PID 1, loads the seccomp filter, and runs the grading in a child of its own
(:func:`become_init`).

Nothing this process does is final: the submission runs here, with native code, and can undo
any of it. The parent believes only what it checks itself (see :mod:`runner.protocol`).
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import traceback
from pathlib import Path

from runner import procs
from runner.policy import RLIMIT_FILE_BYTES, RLIMIT_PROCESSES
from runner.sandbox.jail import libc_unshare_net, load_filter

# captured at import, before any submission code: a solution that replaces os.write or
# os.read does not change what the harness sends (and timing_tampering() notices)
_WRITE = os.write
_READ = os.read


def set_limits(jailed: bool) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    cap = RLIMIT_FILE_BYTES if hard == resource.RLIM_INFINITY else min(hard, RLIMIT_FILE_BYTES)
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    if jailed:
        # counts the jail user's tasks in its own user namespace (not enforced where that
        # user maps to root outside; the parent's process and thread limits hold there)
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (RLIMIT_PROCESSES * 8, RLIMIT_PROCESSES * 8))
        except (ValueError, OSError):
            pass


def become_init(report_fd: int, command_fd: int) -> None:
    """In the jail this process starts as its PID 1 (bwrap's ``--as-pid-1``: bwrap keeps no
    init of its own there, which ran unfiltered). The kernel drops every signal sent to a PID 1
    from inside its namespace, its own included, whose action is the default: the grading
    would survive its own abort() or SIGSEGV. So, filter loaded, this PID 1 forks, the grading
    runs in the child (returns there), and PID 1 only waits for it and exits as it did (a
    signal as 128 + n, as bwrap reports one); the kernel then kills the rest of the namespace.
    PID 1 is made undumpable: the grading cannot write into it through /proc/1/mem."""
    pid = os.fork()
    if pid == 0:
        return
    os.close(report_fd)
    os.close(command_fd)
    procs.set_dumpable(False)
    procs.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)    # Python's KeyboardInterrupt handler
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        os._exit(1)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status)
             else 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1)


def _hide(fd: int) -> int:
    """``fd`` moved to a random free number above 100 (inheritable off, original closed)."""
    for _ in range(64):
        target = random.randint(100, 1000)
        try:
            os.fstat(target)
            continue
        except OSError:
            pass
        os.dup2(fd, target, inheritable=False)
        os.close(fd)
        return target
    return fd


class PipeChannel:
    """JSON lines to the parent, each message's tensors right after its line as raw bytes (in
    the order of their names, sorted; the parent knows every dtype and shape and reads exactly
    that many bytes); commands from the parent as JSON lines."""

    def __init__(self, report_fd: int, command_fd: int):
        self._out = report_fd
        self._in = command_fd
        self._buffer = b""

    def _write(self, record: dict) -> None:
        self._write_bytes((json.dumps(record) + "\n").encode())

    def _write_bytes(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[_WRITE(self._out, view):]

    def progress(self, message: str) -> None:
        self._write({"kind": "progress", "payload": {"message": message}})

    def send(self, kind, payload, tensors=None) -> None:
        record = {"kind": kind, "payload": payload}
        names = sorted(tensors or {})
        if names:
            record["tensors"] = names
        self._write(record)
        for name in names:
            self._write_bytes(raw_bytes(tensors[name]))

    def receive(self) -> dict:
        """The parent's next command (blocks; an empty dict when the parent has gone)."""
        while b"\n" not in self._buffer:
            chunk = _READ(self._in, 65536)
            if not chunk:
                return {}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            command = json.loads(line)
        except ValueError:
            return {}
        return command if isinstance(command, dict) else {}


def capture_check() -> str:
    """Names of the captured channel functions that were replaced ('' when none)."""
    changed = []
    if PipeChannel._write.__code__ is not _WRITE_CODE:
        changed.append("the report channel's writer")
    if PipeChannel.send.__code__ is not _SEND_CODE:
        changed.append("the report channel's send")
    if PipeChannel._write_bytes.__code__ is not _WRITE_BYTES_CODE:
        changed.append("the report channel's byte writer")
    return ", ".join(changed)


def raw_bytes(tensor):
    """The tensor's bytes, little-endian, in row-major order (what the parent reads back)."""
    import torch  # lazy: torch loads only after the limits and the filter are in place

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else b""


_WRITE_CODE = PipeChannel._write.__code__
_SEND_CODE = PipeChannel.send.__code__
_WRITE_BYTES_CODE = PipeChannel._write_bytes.__code__


PRELOADABLE = ("triton", "cupy")
PARKED = "parked"      # the one line a parked jail sends before its job (not a protocol message)


def warm_up(device: str, preload: list, gpu: bool) -> list:
    """What a parked jail starts before its job is known: torch and the submission side
    (``runner.execute``), the modules in ``preload`` (Triton) where installed, and on a GPU
    (``gpu``: once the parent says the GPU is free) the CUDA context. Nothing here
    depends on a submission: the jail serves one grading and is destroyed after it. Returns
    notes on what could not be warmed (the grading then starts it itself, as a cold jail does)."""
    notes = []
    try:
        import runner.execute  # noqa: F401 - torch, the languages, the timing module
    except Exception as exc:  # noqa: BLE001 - execute's import fails again, and is reported
        return [f"the parked jail could not import the harness ({type(exc).__name__})"]
    for name in preload:
        if name in PRELOADABLE:
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - not installed: a solution says so when loaded
                pass
    if gpu and device.startswith("cuda"):
        try:
            import torch   # lazy: only once the limits and the filter are in place
            torch.cuda.set_device(0)                 # the jail shows one GPU
            torch.empty(1, device="cuda")            # the primary context and the allocator
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - the grading's own set_device reports it
            notes.append(f"the parked jail could not make its CUDA context "
                         f"({str(exc)[:200]})")
    return notes


def main() -> None:
    # run as ``-m``, this module is __main__: make it findable under its own name too (the
    # harness's tamper check looks it up there)
    sys.modules.setdefault("runner.sandbox.child", sys.modules[__name__])
    spec = json.loads(Path(sys.argv[1]).read_text())
    jailed = bool(spec.get("jailed"))
    notes = []
    if not jailed:
        network = libc_unshare_net()
        if network:
            notes.append(network)
    set_limits(jailed)
    if jailed:
        refused = load_filter()
        if refused:
            notes.append(refused)
        if os.getpid() == 1:
            become_init(spec["report_fd"], spec["command_fd"])
    procs.become_subreaper()
    procs.die_with_parent()
    if os.getppid() == 1 and not jailed:
        os._exit(1)              # the parent died before that: nobody would read the report
    channel = PipeChannel(_hide(spec["report_fd"]), _hide(spec["command_fd"]))
    if spec.get("parked"):
        # a pre-warmed jail (runner.sandbox.warm): start everything that does not depend on
        # the submission, say so, and wait for the one job this jail will ever run
        device = str(spec.get("device") or "cpu")
        notes += warm_up(device, list(spec.get("preload") or []), bool(spec.get("gpu_warm")))
        channel._write({"kind": PARKED, "payload": {}})
        command = channel.receive()
        if command.get("kind") == "warm-gpu":      # the GPU is free now: make the context
            notes += warm_up(device, [], True)
            command = channel.receive()
        if command.get("kind") != "job" or not isinstance(command.get("job"), dict):
            os._exit(0)         # the parent discarded this jail (or is gone)
        spec["job"] = command["job"]
    channel.send("sandbox", {"notes": notes})
    try:
        # lazy: torch and the submission side load only once the limits and the seccomp
        # filter are in place
        from runner.execute import execute
        from runner.protocol import Job
        execute(Job(**spec["job"]), channel)
    except BaseException:  # noqa: BLE001 - reported to the parent as our failure
        try:
            channel.send("internal", {"details": traceback.format_exc()[-20000:]})
        except Exception:  # noqa: BLE001 - the pipe itself is gone; the exit code tells
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    procs.kill_tree(os.getpid(), include_root=False)   # what the submission left running
    os._exit(0)  # skip atexit handlers and CUDA teardown the submission may have hooked


if __name__ == "__main__":
    main()
