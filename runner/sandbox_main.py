"""The child process of a sandboxed grading: ``python -m runner.sandbox_main JOB_DIR FD [PARENT]``.

Before any submission code is imported it drops into its own network namespace where the OS
allows, sets resource limits, makes itself a subreaper (orphans of the submission's processes
stay in its tree, where the parent finds and kills them) and asks for SIGKILL when its parent
dies, and opens its report pipe; then it runs :func:`execute`.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
import traceback
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MAX_FILE_BYTES = 1 << 30


def isolate_network() -> str:
    """Enter an empty network namespace (loopback only, down). Must run before any thread
    starts (importing torch starts some), because unshare(CLONE_NEWUSER) refuses threads."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        return f"network not isolated ({exc})"
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) == 0:
        return "network: isolated (empty network namespace)"
    return f"network not isolated: unshare failed ({os.strerror(ctypes.get_errno())})"


def set_limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    cap = MAX_FILE_BYTES if hard == resource.RLIM_INFINITY else min(hard, MAX_FILE_BYTES)
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))


class PipeChannel:
    """JSON lines to the parent; tensors as files it loads with ``weights_only=True``."""

    def __init__(self, fd: int, msg_dir: Path):
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._msg_dir = msg_dir
        self._count = 0

    def _write(self, record: dict) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def progress(self, message: str) -> None:
        self._write({"kind": "progress", "payload": {"message": message}})

    def send(self, kind, payload, tensors=None) -> None:
        record = {"kind": kind, "payload": payload}
        if tensors:
            import torch
            self._count += 1
            name = f"{self._count:05d}.pt"
            torch.save({k: v.contiguous() for k, v in tensors.items()}, self._msg_dir / name)
            record["tensors"] = name
        self._write(record)


def main() -> None:
    job_dir, fd = Path(sys.argv[1]), int(sys.argv[2])
    network = isolate_network()
    set_limits()
    from runner import procs
    procs.become_subreaper()
    procs.die_with_parent()      # after unshare(), which may clear it
    if len(sys.argv) > 3 and os.getppid() != int(sys.argv[3]):
        os._exit(1)              # the parent died before that: nobody would read the report
    channel = PipeChannel(fd, job_dir / "msgs")
    channel.send("sandbox", {"notes": [] if network.startswith("network: isolated") else [network]})
    try:
        from runner.execute import Job, execute
        job = Job(**json.loads((job_dir / "job.json").read_text()))
        execute(job, channel)
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
