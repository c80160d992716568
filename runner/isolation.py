"""Running the submission side of a grading in a child process, within limits.

The child (:mod:`runner.sandbox_main`) starts with a scrubbed environment, a private temporary
working directory, its own process group and session, no core dumps, a cap on file sizes,
and (where the OS allows) its own empty network namespace. It reports through a pipe of
JSON lines; output tensors travel as files loaded with ``torch.load(weights_only=True)``,
so nothing the child writes can execute code here. The parent enforces the wall-clock limit
and the host-memory limit by watching the child's process group, and kills the child's whole
process tree with SIGKILL when either is passed: a spinning kernel or a corrupted CUDA context
dies with the child, and the next grading starts clean.

Nothing here waits on the child without a bound (see :mod:`runner.procs`): the report pipe is
read without blocking (a descendant that keeps it open, or a child stuck in native code, cannot
stall the parent); the child is killed with SIGKILL, never asked (a thread blocked in C never
runs a Python signal handler, and the submission may ignore SIGTERM); descendants that left
its process group or session are found through the process tree (the child is a subreaper, so
orphans stay in it, and when this process is a subreaper too, as ``run_challenge.py`` and the
judge's job process are, what the child orphaned before it died is re-parented here and
killed as well); and a child that is not reaped within ``Limits.kill_wait_s`` of its
SIGKILL (the GPU driver still tearing its context down) is reported on without waiting, and
reaped later in the background.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from runner import procs

RUNNER_ROOT = Path(__file__).resolve().parent.parent
MAX_LINE_BYTES = 1 << 20
MAX_PROGRESS = 1000                 # progress lines passed on per grading (the child may flood)
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
    kill_wait_s: float = 10.0                 # after SIGKILL, wait this long for the child to be
    #                                           reaped (a GPU context's teardown), then go on


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
        # the interpreter's small numpy dots: OpenBLAS threads spin-wait on a busy machine
        # (40 ms instead of 0.3 ms for a 16x256x128 product)
        env["OPENBLAS_NUM_THREADS"] = "1"
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


def _read_bounded(f, limit: int) -> Tuple[str, bool]:
    """The first ``limit`` bytes of an open file (read by offset: the child shares it)."""
    try:
        size = os.fstat(f.fileno()).st_size
        data = os.pread(f.fileno(), limit, 0)
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


def _load_tensors(msg_dir: Path, name: Optional[str]) -> Dict[str, torch.Tensor]:
    if not name:
        return {}
    if not isinstance(name, str) or "/" in name or name in (".", ".."):
        raise ValueError("a tensor file outside the message folder")
    # the child writes this folder: never follow a link, never block opening a FIFO
    fd = os.open(msg_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("a tensor file that is not a regular file")
        data = torch.load(f, map_location="cpu", weights_only=True)
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
    command = [sys.executable, "-s", "-m", "runner.sandbox_main", str(job_dir), str(write_fd),
               str(os.getpid())]
    env = child_environment(job_dir, job.device, limits)
    env["PYTHONPATH"] = str(RUNNER_ROOT)
    # the logs are read through these descriptors, never reopened by name: the child can
    # write its job folder, and a FIFO in place of stdout.txt would block an open()
    out = open(job_dir / "stdout.txt", "w+b")
    err = open(job_dir / "stderr.txt", "w+b")
    reader: Optional[procs.LineReader] = None
    # a subreaper (run_challenge.py, the judge's job process) also gets what the child orphans
    # when it dies: anything new below us after the grading is the submission's
    before = set(procs.descendants(os.getpid())) if procs.is_subreaper() else None
    try:
        try:
            proc = subprocess.Popen(command, cwd=job_dir / "tmp", env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    pass_fds=(write_fd,), start_new_session=True)
        finally:
            os.close(write_fd)
        reader = procs.LineReader(read_fd, MAX_LINE_BYTES)
        try:
            outcome = _watch(proc, reader, job_dir, limits, progress)
        finally:
            if before is not None:
                _kill_orphans(before | {proc.pid})
        outcome.logs = _logs(out, err, limits.output_bytes)
        return outcome
    finally:
        if reader is not None:
            reader.close()
        else:
            os.close(read_fd)
        out.close()
        err.close()


def _watch(proc: subprocess.Popen, reader: "procs.LineReader", job_dir: Path, limits: Limits,
           progress: Callable[[str], None]) -> ChildOutcome:
    """Read the child's messages until it ends or a limit is passed; the child's whole tree is
    dead, or reported as not yet reaped, when this returns (even on KeyboardInterrupt)."""
    outcome = ChildOutcome()
    deadline = time.monotonic() + limits.timeout_s
    phase, killed_for = "starting", None
    next_memory_check = 0.0
    exited_at = 0.0
    forwarded = 0
    try:
        while True:
            for raw in reader.read(timeout=0.05, max_lines=64):
                try:
                    msg = json.loads(raw)
                    kind, payload = str(msg["kind"]), dict(msg.get("payload") or {})
                    if kind == "progress":
                        message = str(payload.get("message", ""))[:200]
                        if message != phase and forwarded < MAX_PROGRESS:
                            forwarded += 1
                            progress(message)
                        phase = message
                    elif kind == "done":
                        outcome.finished = True
                    elif kind == "sandbox":
                        outcome.notes += [str(n) for n in payload.get("notes", [])][:5]
                    else:
                        tensors = _load_tensors(job_dir / "msgs", msg.get("tensors"))
                        outcome.messages.append((kind, payload, tensors))
                except (ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
                    if len(outcome.notes) < 20:
                        outcome.notes.append(f"ignored a malformed message from the submission "
                                             f"process ({str(exc)[:200]})")
                if time.monotonic() > deadline:
                    break           # a flood of messages must not hold off the time limit
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                # a process the submission left behind may hold the pipe open: stop waiting soon
                if reader.finished or now - exited_at > 2.0:
                    break
            elif now > deadline:
                killed_for = "time"
                break
            elif now > next_memory_check:
                next_memory_check = now + 0.25
                if procs.group_rss_bytes(proc.pid) > limits.host_memory_bytes:
                    killed_for = "memory"
                    break
    finally:
        # nothing of the submission outlives its grading: its tree, its process group and
        # its session (the child leads both), with SIGKILL; then a bounded wait to reap it
        procs.kill_tree(proc.pid if proc.poll() is None else None, groups=[proc.pid],
                        sessions=[proc.pid])
        if not procs.wait_exited(proc, limits.kill_wait_s):
            procs.reap_later(proc)
            outcome.notes.append(f"the submission's process had not exited "
                                 f"{limits.kill_wait_s:g} s after it was killed (a GPU context "
                                 f"still being torn down?)")
    internal = [p for k, p, _ in outcome.messages if k == "internal"]
    if internal:
        outcome.finished = False
        outcome.verdict, outcome.message = "internal_error", "the grader failed inside the " \
            "submission process (a bug in the harness, or your code broke its internals)"
        outcome.details = str(internal[0].get("details", ""))
    elif not outcome.finished:
        _explain_exit(outcome, proc.returncode, killed_for, phase, limits)
    return outcome


def _kill_orphans(known) -> None:
    """SIGKILL the trees of this (subreaper) process's descendants not in ``known``."""
    me = os.getpid()
    for pid in procs.descendants(me):
        if pid not in known:
            procs.kill_tree(pid)


def _logs(stdout, stderr, limit: int) -> str:
    parts = []
    for label, f in (("stdout", stdout), ("stderr", stderr)):
        text, cut = _read_bounded(f, limit)
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
