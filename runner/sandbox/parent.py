"""Running the submission side of a grading in a jailed child process, within limits.

The child (:mod:`runner.sandbox.child`) runs inside the jail of :mod:`runner.sandbox.jail`
(bubblewrap namespaces, a seccomp filter, a read-only minimal view of the system, one writable
job folder unique to this grading). Where bubblewrap cannot run, the child still runs in a
process of its own with a scrubbed environment, and the result says plainly that it was not
isolated.

The child reports through a pipe of JSON lines (checked against :mod:`runner.protocol`);
output tensors travel as files loaded with ``torch.load(weights_only=True)``. The parent
answers through a second pipe with commands (:class:`Conversation` decides them). Limits hold
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
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol as TypingProtocol

import torch

from runner import procs, protocol
from runner.protocol import Message, ProtocolViolation, Verdict
from runner.sandbox import jail

RUNNER_ROOT = jail.RUNNER_ROOT
MAX_LINE_BYTES = 1 << 20
MAX_PROGRESS = 1000                 # progress lines passed on per grading (the child may flood)
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


@dataclass
class ChildOutcome:
    finished: bool = False          # the child reported "done"
    verdict: str = ""               # when the process, not the conversation, decided
    message: str = ""
    details: str = ""
    logs: str = ""
    notes: List[str] = field(default_factory=list)
    isolated: bool = False


class Conversation(TypingProtocol):
    """The trusted side of one grading: it reads each message and says what to send back."""

    def on_message(self, message: Message, received_at: float) -> List[Dict[str, Any]]: ...

    # True while the grader times something on its own clock: the watcher then reads messages
    # as they come, without pausing to scan /proc or the job folder (which takes milliseconds)
    timing_sensitive: bool


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
    """The CLI's build caches (CUDA and Triton), shown writable in the jail: a user's own
    gradings share them. Nothing else of the cache folder is shown (the measured memory
    ceiling, which the grader believes, lives beside them)."""
    root = Path(env.get("CHALLENGE_CACHE_DIR") or
                Path(env["XDG_CACHE_HOME"]) / "gpu-challenge-harness")
    out = []
    for path in (root / "cuda", Path(env["TRITON_CACHE_DIR"])):
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


SIGNAL_NAMES = {
    signal.SIGSEGV: "SIGSEGV (segmentation fault: a bad host pointer?)",
    signal.SIGABRT: "SIGABRT (abort)",
    signal.SIGBUS: "SIGBUS (bus error)",
    signal.SIGFPE: "SIGFPE (arithmetic error)",
    signal.SIGILL: "SIGILL (illegal instruction)",
    signal.SIGKILL: "SIGKILL",
    signal.SIGTERM: "SIGTERM",
    signal.SIGSYS: "SIGSYS (a system call the sandbox does not allow)",
}


def load_tensors(msg_dir: Path, name: Optional[str]) -> Dict[str, torch.Tensor]:
    """The tensors of one message; the file is removed once read (it counts toward the disk
    limit, and nobody needs it twice)."""
    if not name:
        return {}
    if "/" in name or name in (".", ".."):
        raise ProtocolViolation("a tensor file outside the message folder")
    # the child writes this folder: never follow a link, never block opening a FIFO
    try:
        fd = os.open(msg_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ProtocolViolation(f"a tensor file that cannot be opened ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ProtocolViolation("a tensor file that is not a regular file")
            try:
                data = torch.load(f, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - a damaged or hostile file
                raise ProtocolViolation(f"a tensor file that does not load ({str(exc)[:100]})") from None
    finally:
        try:
            os.unlink(msg_dir / name)
        except OSError:
            pass
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in data.items()):
        raise ProtocolViolation("a tensor file that is not a dict of tensors")
    return data


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
            _watch(proc, reader, command_w, job_dir, limits, conversation, progress, outcome)
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


def _send(command_w: int, commands: List[Dict[str, Any]]) -> None:
    for cmd in commands:
        data = (json.dumps(cmd) + "\n").encode()
        try:
            os.write(command_w, data)
        except OSError:
            return      # the child is gone; its exit decides


def _watch(proc: subprocess.Popen, reader: procs.LineReader, command_w: int, job_dir: Path,
           limits: Limits, conversation: Conversation, progress: Callable[[str], None],
           outcome: ChildOutcome) -> None:
    """Read the child's messages until it ends, breaks the protocol or passes a limit; the
    jail is dead, or reported as not yet reaped, when this returns (even on Ctrl-C)."""
    started = time.monotonic()
    deadline = started + limits.startup_s
    phase, killed_for = "starting", None
    last_forwarded = ""
    next_usage_check = next_disk_check = 0.0
    exited_at = 0.0
    forwarded = 0
    quiet: List[float] = []
    try:
        while True:
            for raw in reader.read(timeout=0.05, max_lines=64):
                received = time.perf_counter()
                try:
                    kind, payload, tensor_file = protocol.parse(json.loads(raw))
                    if kind == protocol.PROGRESS:
                        message = str(payload.get("message", ""))[:200]
                        if message != last_forwarded and forwarded < MAX_PROGRESS:
                            forwarded += 1
                            last_forwarded = message
                            progress(message)
                        phase = message
                        continue
                    if kind == protocol.SANDBOX:
                        outcome.notes += [str(n)[:300] for n in payload.get("notes", [])]
                    if kind == protocol.READY:
                        deadline = time.monotonic() + limits.timeout_s
                        phase = "loading"
                    if kind == protocol.DONE:
                        outcome.finished = True
                    tensors = load_tensors(job_dir / "msgs", tensor_file)
                    commands = conversation.on_message(Message(kind, payload, tensors), received)
                    _send(command_w, commands)
                except (ValueError, UnicodeDecodeError):
                    killed_for = "protocol"
                    outcome.message = "a line on the report channel that is not JSON"
                except ProtocolViolation as exc:
                    killed_for = "protocol"
                    outcome.message = str(exc)
                if killed_for or time.monotonic() > deadline:
                    break           # a flood of messages must not hold off the time limit
            if killed_for:
                break
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                # a process the submission left behind may hold the pipe open: stop waiting soon
                if reader.finished or now - exited_at > 2.0:
                    break
            elif now > deadline:
                killed_for = "time"
                break
            elif _quiet(conversation, now, quiet):
                continue            # limits are polled again once the grader's clock stops
            elif now > next_usage_check:
                next_usage_check = now + 0.2
                usage = procs.tree_usage(proc.pid)
                if usage.rss_bytes > limits.host_memory_bytes:
                    killed_for = "memory"
                elif usage.processes > limits.max_processes:
                    killed_for = "processes"
                elif usage.threads > limits.max_threads:
                    killed_for = "threads"
                if killed_for:
                    break
            if now > next_disk_check and not _quiet(conversation, now, quiet):
                next_disk_check = now + 1.0
                used, entries = procs.folder_usage(str(job_dir))
                if used > limits.disk_bytes or entries >= 200_000:
                    killed_for = "disk"
                    break
    finally:
        # nothing of the submission outlives its grading: the jail's tree (its first process
        # takes the PID namespace with it), its process group and session, with SIGKILL
        procs.kill_tree(proc.pid if proc.poll() is None else None, groups=[proc.pid],
                        sessions=[proc.pid])
        if not procs.wait_exited(proc, limits.kill_wait_s):
            procs.reap_later(proc)
            outcome.notes.append(f"the submission's process had not exited "
                                 f"{limits.kill_wait_s:g} s after it was killed (a GPU context "
                                 f"still being torn down?)")
    if not outcome.finished or killed_for:
        outcome.finished = False
        _explain_exit(outcome, proc.returncode, killed_for, phase, limits)


QUIET_MAX_S = 5.0     # the longest the limits go unpolled while the grader times a burst


def _quiet(conversation, now: float, since: List[float]) -> bool:
    """Whether to skip polling the limits now: the grader is timing something, for at most
    QUIET_MAX_S at a stretch (a submission cannot hold the watcher off its limits longer)."""
    if not getattr(conversation, "timing_sensitive", False):
        since.clear()
        return False
    if not since:
        since.append(now)
    return now - since[0] < QUIET_MAX_S


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


def _explain_exit(outcome: ChildOutcome, returncode: Optional[int], killed_for: Optional[str],
                  phase: str, limits: Limits) -> None:
    during = f" (while {phase})" if phase else ""
    if killed_for == "protocol":
        outcome.verdict = Verdict.REJECTED.value
        outcome.message = f"{protocol.INTERFERENCE}: {outcome.message}"
    elif killed_for == "time":
        outcome.verdict = Verdict.TIME_LIMIT_EXCEEDED.value
        limit = limits.startup_s if phase == "starting" else limits.timeout_s
        outcome.message = (f"grading did not finish within the limit of {limit:g} s"
                           f"{during}: a loop or kernel that never ends?")
    elif killed_for == "memory":
        outcome.verdict = Verdict.MEMORY_LIMIT_EXCEEDED.value
        outcome.message = (f"the submission used more than {limits.host_memory_bytes / 2**30:.1f} GiB "
                           f"of host memory, counting every process it started{during}")
    elif killed_for == "processes":
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission ran more than {limits.max_processes} processes at "
                           f"once{during}; solutions must not fork")
    elif killed_for == "threads":
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission ran more than {limits.max_threads} threads at "
                           f"once{during}")
    elif killed_for == "disk":
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission wrote more than {limits.disk_bytes / 2**30:.1f} GiB "
                           f"(or too many files) in its working folder{during}")
    elif returncode is not None and returncode < 0:
        sig = -returncode
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission's process was killed by "
                           f"{SIGNAL_NAMES.get(sig, f'signal {sig}')}{during}")
    elif outcome.isolated and returncode is not None and returncode > 128 and phase != "starting":
        sig = returncode - 128   # bwrap reports its child's signal as 128 + n
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission's process was killed by "
                           f"{SIGNAL_NAMES.get(sig, f'signal {sig}')}{during}")
    else:
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission's process exited with code {returncode}{during} "
                           f"before grading finished: does your code call os._exit() or exit()?")
