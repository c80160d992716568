"""Running the submission side of a grading in a child process, within limits.

The child (:mod:`runner.sandbox_main`) starts with a scrubbed environment, a private temporary
working directory, its own process group and session, no core dumps, a cap on file sizes,
and (where the OS allows) its own empty network namespace. It reports through a pipe of
JSON lines; output tensors travel as files loaded with ``torch.load(weights_only=True)``,
so nothing the child writes can execute code here. The parent enforces the wall-clock limit
and the host-memory limit by watching the child's process group, and kills the whole group
with SIGKILL when either is passed: a spinning kernel or a corrupted CUDA context dies with
the child, and the next grading starts clean.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

RUNNER_ROOT = Path(__file__).resolve().parent.parent
MAX_LINE_BYTES = 1 << 20
ENV_PASSTHROUGH = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES",
                   "LANG", "LC_ALL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES")


@dataclass
class Limits:
    timeout_s: float = 300.0                  # wall clock for the submission side, build included
    host_memory_bytes: int = 16 * 2**30       # resident memory of the child's process group
    gpu_memory_bytes: Optional[int] = None    # torch's allocator cap; None: the whole device
    output_bytes: int = 64 * 1024             # captured stdout/stderr kept in the result
    private_caches: bool = False              # Triton/CUDA build caches private to this job
    #                                           (the judge: one submission cannot poison another's)


@dataclass
class ChildOutcome:
    messages: List[Tuple[str, Dict[str, Any], Dict[str, torch.Tensor]]] = field(default_factory=list)
    finished: bool = False          # the child reported "done"
    verdict: str = ""               # when not finished: why
    message: str = ""
    details: str = ""
    logs: str = ""
    notes: List[str] = field(default_factory=list)


def user_cache_home() -> str:
    return os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")


def child_environment(job_dir: Path, device: str, limits: Limits) -> Dict[str, str]:
    env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=str(job_dir / "home"), TMPDIR=str(job_dir / "tmp"), PYTHONUNBUFFERED="1",
               PYTHONDONTWRITEBYTECODE="1")
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    if limits.private_caches:
        env["XDG_CACHE_HOME"] = str(job_dir / "cache")
        env["TRITON_CACHE_DIR"] = str(job_dir / "cache" / "triton")
    else:  # a user grading their own code keeps their build caches between gradings
        env["XDG_CACHE_HOME"] = user_cache_home()
        env["TRITON_CACHE_DIR"] = os.environ.get("TRITON_CACHE_DIR",
                                                 str(Path.home() / ".triton" / "cache"))
        if "CHALLENGE_CACHE_DIR" in os.environ:
            env["CHALLENGE_CACHE_DIR"] = os.environ["CHALLENGE_CACHE_DIR"]
    return env


def _group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in the group (Linux /proc; 0 elsewhere)."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) != pgid:     # field 5 (pgrp), counted after the comm field
                continue
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24 (rss, pages)
        except (OSError, ValueError, IndexError):
            continue
    return total


def _read_bounded(path: Path, limit: int) -> Tuple[str, bool]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return "", False
    return data.decode("utf-8", errors="replace"), size > limit


SIGNAL_NAMES = {
    signal.SIGSEGV: "SIGSEGV (segmentation fault: a bad host pointer?)",
    signal.SIGABRT: "SIGABRT (abort)",
    signal.SIGBUS: "SIGBUS (bus error)",
    signal.SIGFPE: "SIGFPE (arithmetic error)",
    signal.SIGILL: "SIGILL (illegal instruction)",
    signal.SIGKILL: "SIGKILL",
    signal.SIGTERM: "SIGTERM",
}


class _Reader(threading.Thread):
    """Reads the child's JSON lines into a queue (so the main loop can watch the clock)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines = stream, queue.Queue()

    def run(self) -> None:
        for raw in iter(lambda: self.stream.readline(MAX_LINE_BYTES), b""):
            self.lines.put(raw)
        self.lines.put(None)


def _load_tensors(msg_dir: Path, name: Optional[str]) -> Dict[str, torch.Tensor]:
    if not name:
        return {}
    path = (msg_dir / name).resolve()
    if path.parent != msg_dir.resolve():
        raise ValueError("a tensor file outside the message folder")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in data.items()):
        raise ValueError("a tensor file that is not a dict of tensors")
    return data


def run_in_child(job, limits: Limits, progress: Callable[[str], None]) -> ChildOutcome:
    job_dir = Path(tempfile.mkdtemp(prefix="grading-"))
    try:
        return _run(job, limits, progress, job_dir)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _run(job, limits: Limits, progress: Callable[[str], None], job_dir: Path) -> ChildOutcome:
    for sub in ("home", "tmp", "msgs", "cache"):
        (job_dir / sub).mkdir()
    (job_dir / "job.json").write_text(json.dumps(job.to_dict()))
    read_fd, write_fd = os.pipe()
    stdout_path, stderr_path = job_dir / "stdout.txt", job_dir / "stderr.txt"
    command = [sys.executable, "-s", "-m", "runner.sandbox_main", str(job_dir), str(write_fd)]
    env = child_environment(job_dir, job.device, limits)
    env["PYTHONPATH"] = str(RUNNER_ROOT)
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(command, cwd=job_dir / "tmp", env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, pass_fds=(write_fd,),
                                start_new_session=True)
    os.close(write_fd)
    outcome = ChildOutcome()
    reader = _Reader(os.fdopen(read_fd, "rb"))
    reader.start()
    deadline = time.monotonic() + limits.timeout_s
    phase, killed_for = "starting", None
    next_memory_check = 0.0
    eof, exited_at = False, 0.0
    while True:
        try:
            raw = reader.lines.get(timeout=0.05)
        except queue.Empty:
            raw = b"" if not eof else None
        if raw is None:
            eof = True
        elif raw:
            try:
                msg = json.loads(raw)
                kind, payload = str(msg["kind"]), dict(msg.get("payload") or {})
                if kind == "progress":
                    phase = str(payload.get("message", ""))[:200]
                    progress(phase)
                elif kind == "done":
                    outcome.finished = True
                elif kind == "sandbox":
                    outcome.notes += [str(n) for n in payload.get("notes", [])][:5]
                else:
                    tensors = _load_tensors(job_dir / "msgs", msg.get("tensors"))
                    outcome.messages.append((kind, payload, tensors))
            except (ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
                outcome.notes.append(f"ignored a malformed message from the submission process ({exc})")
        now = time.monotonic()
        if proc.poll() is not None:
            exited_at = exited_at or now
            # a process the submission left behind may hold the pipe open: stop waiting soon
            if eof or now - exited_at > 2.0:
                break
        if proc.poll() is None and now > deadline:
            killed_for = "time"
        elif proc.poll() is None and now > next_memory_check:
            next_memory_check = now + 0.25
            if _group_rss_bytes(proc.pid) > limits.host_memory_bytes:
                killed_for = "memory"
        if killed_for:
            _kill_group(proc)
            break
    _kill_group(proc)  # nothing of the submission outlives its grading
    proc.wait()
    outcome.logs = _logs(stdout_path, stderr_path, limits.output_bytes)
    internal = [p for k, p, _ in outcome.messages if k == "internal"]
    if internal:
        outcome.finished = False
        outcome.verdict, outcome.message = "internal_error", "the grader failed inside the " \
            "submission process (a bug in the harness, or your code broke its internals)"
        outcome.details = str(internal[0].get("details", ""))
    elif not outcome.finished:
        _explain_exit(outcome, proc.returncode, killed_for, phase, limits)
    return outcome


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _logs(stdout_path: Path, stderr_path: Path, limit: int) -> str:
    parts = []
    for label, path in (("stdout", stdout_path), ("stderr", stderr_path)):
        text, cut = _read_bounded(path, limit)
        if text.strip():
            parts.append(f"[{label}]\n{text.rstrip()}"
                         + (f"\n[... {label} truncated: only the first {limit} bytes are kept]"
                            if cut else ""))
    return "\n".join(parts)


def _explain_exit(outcome: ChildOutcome, returncode: Optional[int], killed_for: Optional[str],
                  phase: str, limits: Limits) -> None:
    during = f" (while {phase})" if phase else ""
    if killed_for == "time":
        outcome.verdict = "time_limit_exceeded"
        outcome.message = (f"grading did not finish within the limit of {limits.timeout_s:g} s"
                           f"{during}: a loop or kernel that never ends?")
    elif killed_for == "memory":
        outcome.verdict = "memory_limit_exceeded"
        outcome.message = (f"the submission used more than {limits.host_memory_bytes / 2**30:.1f} GiB "
                           f"of host memory{during}")
    elif returncode is not None and returncode < 0:
        sig = -returncode
        name = SIGNAL_NAMES.get(sig, f"signal {sig}")
        outcome.verdict = "runtime_error"
        outcome.message = f"the submission's process was killed by {name}{during}"
    else:
        outcome.verdict = "runtime_error"
        outcome.message = (f"the submission's process exited with code {returncode}{during} "
                           f"before grading finished: does your code call os._exit() or exit()?")
