"""Running the submission side of a grading in a jailed child process, within limits.

The child (:mod:`runner.sandbox.child`) runs inside the jail of :mod:`runner.sandbox.jail`
(bubblewrap namespaces, a seccomp filter, a read-only minimal view of the system, one writable
job folder unique to this grading). Where bubblewrap cannot run, the child still runs in a
process of its own with a scrubbed environment, and the result says plainly that it was not
isolated.

The child reports through a pipe of JSON lines (read, checked and answered by
:func:`runner.sandbox.watch.watch`); output tensors travel as files loaded with
``torch.load(weights_only=True)``. The parent answers through a second pipe with commands
(the grader's :class:`~runner.sandbox.watch.Conversation` decides them). Limits hold
for the whole jail, not one process group: the resident memory, processes and threads of
every process below the jail's first process, and the size of the job folder; past any of
them, or past the time limit, the jail's first process is killed, and the kernel kills every
process of its PID namespace with it.

Nothing here waits on the child without a bound (see :mod:`runner.procs`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from runner import procs
from runner.sandbox import jail
from runner.sandbox.watch import ChildOutcome, Conversation, watch

RUNNER_ROOT = jail.RUNNER_ROOT
MAX_LINE_BYTES = 1 << 20
ENV_PASSTHROUGH = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES",
                   "LANG", "LC_ALL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                   "TRITON_LIBCUDA_PATH", "TRITON_PTXAS_PATH", "GRADER_BWRAP")


@dataclass
class Limits:
    timeout_s: float = 300.0                  # wall clock from the child's "ready", build included
    startup_s: float = 300.0                  # wall clock for the interpreter and torch to start
    host_memory_bytes: int = 16 * 2**30       # resident memory of every process in the jail
    gpu_memory_bytes: Optional[int] = None    # torch's allocator cap; None: the whole device
    max_processes: int = 64                   # processes in the jail at once
    max_threads: int = 1024                   # threads in the jail at once
    disk_bytes: int = 4 * 2**30               # the job folder's size
    output_bytes: int = 64 * 1024             # captured stdout/stderr kept in the result
    private_caches: bool = False              # Triton/CUDA build caches private to this job
    #                                           (the judge: one submission cannot poison another's)
    kill_wait_s: float = 10.0                 # after SIGKILL, wait this long for the child to be
    #                                           reaped (a GPU context's teardown), then go on
    sandbox: str = "auto"                     # "auto": jail where possible; "require"; "off"


class SandboxUnavailable(Exception):
    """``Limits.sandbox == "require"`` and no jail can be made here."""


def user_cache_home() -> str:
    return os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")


def child_environment(job_dir: Path, device: str, limits: Limits, jailed: bool) -> Dict[str, str]:
    env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    work = job_dir / "work"
    # the project first, then what the grader's own interpreter was given (the jail shows it)
    pythonpath = [str(RUNNER_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                       if p and Path(p).resolve() != RUNNER_ROOT
                                       and Path(p).resolve() not in RUNNER_ROOT.parents]
    env.update(HOME=str(work / "home"), TMPDIR="/tmp" if jailed else str(job_dir / "tmp"),
               PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join(pythonpath),
               OMP_NUM_THREADS=str(max(1, min(os.cpu_count() or 1, 16))))
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
        # the interpreter's small numpy dots: OpenBLAS threads spin-wait on a busy machine
        # (40 ms instead of 0.3 ms for a 16x256x128 product)
        env["OPENBLAS_NUM_THREADS"] = "1"
    if limits.private_caches:
        env["XDG_CACHE_HOME"] = str(work / "cache")
        env["TRITON_CACHE_DIR"] = str(work / "cache" / "triton")
    else:  # a user grading their own code keeps their build caches between gradings
        env["XDG_CACHE_HOME"] = user_cache_home()
        env["TRITON_CACHE_DIR"] = os.environ.get("TRITON_CACHE_DIR",
                                                 str(Path.home() / ".triton" / "cache"))
        if "CHALLENGE_CACHE_DIR" in os.environ:
            env["CHALLENGE_CACHE_DIR"] = os.environ["CHALLENGE_CACHE_DIR"]
    return env


def shared_caches(env: Dict[str, str]) -> List[Path]:
    """The CLI's build cache (Triton's), shown writable in the jail: a user's own
    gradings share them. Nothing else of the cache folder is shown (the measured memory
    ceiling and case floors, which the grader believes, live beside them)."""
    root = Path(env.get("CHALLENGE_CACHE_DIR") or
                Path(env["XDG_CACHE_HOME"]) / "gpu-challenge-harness")
    out = []
    for path in (Path(env["TRITON_CACHE_DIR"]),):   # CUDA: built and cached by the trusted side
        path.mkdir(parents=True, exist_ok=True)
        out.append(path.resolve())
    return out


def _read_bounded(f, limit: int):
    """The first ``limit`` bytes of an open file (read by offset: the child shares it)."""
    try:
        size = os.fstat(f.fileno()).st_size
        data = os.pread(f.fileno(), limit, 0)
    except OSError:
        return "", False
    return data.decode("utf-8", errors="replace"), size > limit


def jobs_root() -> Path:
    return Path(os.environ.get("GRADER_JOBS_DIR") or tempfile.gettempdir())


def run_in_child(job, limits: Limits, conversation: Conversation,
                 progress: Callable[[str], None], read_only: Optional[List[Path]] = None,
                 gpu_minor: Optional[int] = None) -> ChildOutcome:
    """Run ``job`` (a :class:`runner.execute.Job`) in a jailed child, feeding every message to
    ``conversation``; ``read_only`` are the folders the child must see (the challenge's and the
    solution's)."""
    root = jobs_root()
    root.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=f"grading-{secrets.token_hex(4)}-", dir=root))
    try:
        return _run(job, limits, conversation, progress, job_dir, read_only or [], gpu_minor)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _run(job, limits: Limits, conversation: Conversation, progress: Callable[[str], None],
         job_dir: Path, read_only: List[Path], gpu_minor: Optional[int]) -> ChildOutcome:
    for sub in ("work", "work/home", "work/cache", "tmp", "msgs"):
        (job_dir / sub).mkdir()
    outcome = ChildOutcome()
    usable, why = jail.probe() if limits.sandbox != "off" else (False, "--no-sandbox")
    if not usable and limits.sandbox == "require":
        raise SandboxUnavailable(why)
    jailed = usable
    report_r, report_w = os.pipe()
    command_r, command_w = os.pipe()
    job_data = job.to_dict()
    if jailed and job.device.startswith("cuda"):
        job_data["device"] = "cuda"            # the jail shows one GPU, by UUID
    (job_dir / "job.json").write_text(json.dumps(
        {"job": job_data, "report_fd": report_w, "command_fd": command_r,
         "msg_dir": str(job_dir / "msgs"), "jailed": jailed}))
    env = child_environment(job_dir, job.device, limits, jailed)
    inner = [sys.executable, "-s", "-m", "runner.sandbox.child", str(job_dir / "job.json")]
    pass_fds = [report_w, command_r]
    if jailed:
        if job.device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = _gpu_uuid(job.device)
        spec = jail.JailSpec(job_dir=job_dir, read_only=[p.resolve() for p in read_only],
                             writable=[] if limits.private_caches else shared_caches(env),
                             gpu=job.device.startswith("cuda"), gpu_minor=gpu_minor)
        command = jail.command(spec, inner, env)
        popen_env = {"PATH": env["PATH"]}
        outcome.isolated = True
    else:
        outcome.notes.append(f"not isolated: {why}; the submission ran with this user's rights")
        command, popen_env = inner, env
    out = open(job_dir / "stdout.txt", "w+b")
    err = open(job_dir / "stderr.txt", "w+b")
    reader: Optional[procs.LineReader] = None
    before = set(procs.descendants(os.getpid())) if procs.is_subreaper() else None
    try:
        try:
            proc = subprocess.Popen(command, cwd=job_dir / "work", env=popen_env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    pass_fds=tuple(pass_fds), start_new_session=True,
                                    preexec_fn=None if jailed else _unjailed_child_setup)
        finally:
            for fd in (report_w, command_r):
                os.close(fd)
        reader = procs.LineReader(report_r, MAX_LINE_BYTES)
        try:
            watch(proc, reader, command_w, job_dir, limits, conversation, progress, outcome)
        finally:
            if before is not None:
                _kill_orphans(before | {proc.pid})
        outcome.logs = _logs(out, err, limits.output_bytes)
        return outcome
    finally:
        if reader is not None:
            reader.close()
        else:
            os.close(report_r)
        os.close(command_w)
        out.close()
        err.close()


def _unjailed_child_setup() -> None:
    """Without a jail, the child still gets resource limits before anything of it runs."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _gpu_uuid(device: str) -> str:
    index = torch.device(device).index or 0
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if not uuid:
        return str(index)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def _kill_orphans(known) -> None:
    """SIGKILL the trees of this (subreaper) process's descendants not in ``known``."""
    for pid in procs.descendants(os.getpid()):
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
