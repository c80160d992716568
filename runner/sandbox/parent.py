"""Running the submission side of a grading in a jailed child process, within limits.

The child (:mod:`runner.sandbox.child`) runs inside the jail of :mod:`runner.sandbox.jail`
(bubblewrap namespaces, a seccomp filter, a read-only minimal view of the system, a size-capped
tmpfs as its only writable place) and in a cgroup of its own (:mod:`runner.sandbox.cgroups`:
memory and tasks enforced by the kernel). Where bubblewrap cannot run, grading is refused
unless the caller allows an unjailed child (``Limits.sandbox == "auto"``, the judge's
``--allow-unsandboxed``), which then runs with a scrubbed environment and the result says
plainly that it was not isolated.

Everything the jail can write is hostile to this side: nothing of it is opened by a path or
parsed beyond bytes of a known shape. The child reports through a pipe of JSON lines (read,
checked and answered by :func:`runner.sandbox.watch.watch`); a message's outputs follow it on
the same pipe as raw bytes, read as the dtypes and shapes the grader expects. Its stdout and
stderr go to memory files made here. The parent answers through a second pipe with commands
(the grader's :class:`~runner.sandbox.watch.Conversation` decides them). Past the cgroup's
memory the kernel ends the jail; the resident memory, processes and threads of every process
in it are also polled; past any, or past the time limit, the jail's first process is killed,
and the kernel kills every process of its PID namespace with it.

Nothing here waits on the child without a bound (see :mod:`runner.procs`).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from runner import environment, procs
from runner.catalog import loading_files
from runner.output_tail import logs as bounded_logs
from runner.policy import MAX_LINE_BYTES
from runner.sandbox import cgroups, gpus, jail
from runner.sandbox.limits import Limits
from runner.sandbox.watch import KERNEL_MEMORY, PROTOCOL, Conversation, Ending, watch

RUNNER_ROOT = jail.RUNNER_ROOT
ENV_PASSTHROUGH = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES",
                   "LANG", "LC_ALL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                   "TRITON_LIBCUDA_PATH", "TRITON_PTXAS_PATH", "GRADER_BWRAP")


class SandboxUnavailable(Exception):
    """``Limits.sandbox == "require"`` and no jail can be made here."""


def child_environment(job_dir: Path, device: str, limits: Limits, jailed: bool) -> Dict[str, str]:
    env = environment.inherited(ENV_PASSTHROUGH)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    # every cache of the child is its own, in its own scratch space: nothing it writes is read
    # by the trusted side or by another grading (a planted library would run there)
    work = Path(jail.JAIL_WORK) if jailed else job_dir / "work"
    home = Path(jail.JAIL_HOME) if jailed else work / "home"
    # the project first, then what the grader's own interpreter was given (the jail shows it)
    pythonpath = [str(RUNNER_ROOT)] + [p for p in environment.python_path()
                                       if Path(p).resolve() != RUNNER_ROOT
                                       and Path(p).resolve() not in RUNNER_ROOT.parents]
    env.update(HOME=str(home), TMPDIR=jail.JAIL_SCRATCH if jailed else str(job_dir / "tmp"),
               PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join(pythonpath),
               OMP_NUM_THREADS=str(max(1, min(os.cpu_count() or 1, 16))),
               XDG_CACHE_HOME=str(home / ".cache"),
               TRITON_CACHE_DIR=str(home / ".triton" / "cache"),
               CHALLENGE_CACHE_DIR=str(home / ".cache" / "gpu-challenge-harness"))
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
        # the interpreter's small numpy dots: OpenBLAS threads spin-wait on a busy machine
        # (40 ms instead of 0.3 ms for a 16x256x128 product)
        env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def jail_paths(job_data: Dict) -> Tuple[Dict, Dict[Path, str]]:
    """The job as the jail sees it: the challenge's folder at /challenge/<difficulty>/<name>
    and the solution's folder at /submission, so that no path in the jail names the host's
    folders (a judge's data folder among them); and the host paths -> their jail paths.

    Of the challenge's folder only what loading it needs is shown, file by file
    (:func:`runner.catalog.loading_files`): the folder also holds our reference solutions,
    its known-bad solutions and its tests, which a submission must not read."""
    challenge = Path(job_data["challenge_path"]).resolve()
    solution = Path(job_data["solution_path"]).resolve()
    inside_challenge = f"/challenge/{challenge.parent.name or 'challenges'}/{challenge.name}"
    mapped = {path: f"{inside_challenge}/{path.name}" for path in loading_files(challenge)}
    mapped[solution.parent] = "/submission"
    return ({**job_data, "challenge_path": inside_challenge,
             "solution_path": f"/submission/{solution.name}"}, mapped)


# the job folder is removed by fd-based traversal, never following a link (Linux's rmtree)
assert shutil.rmtree.avoids_symlink_attacks, "shutil.rmtree must not follow links here"


def run_in_child(job, limits: Limits, conversation: Conversation,
                 progress: Callable[[str], None], read_only: Optional[List[Path]] = None,
                 gpu_minor: Optional[int] = None) -> Ending:
    """Run ``job`` (a :class:`runner.execute.Job`) in a jailed child, feeding every message to
    ``conversation``; ``read_only`` are the folders the child must see (the solution's, the
    built library's; the challenge's is shown by :func:`jail_paths`, only what loading it
    needs)."""
    root = environment.jobs_root()
    root.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=f"grading-{secrets.token_hex(4)}-", dir=root))
    try:
        return _run(job, limits, conversation, progress, job_dir, read_only or [], gpu_minor)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _run(job, limits: Limits, conversation: Conversation, progress: Callable[[str], None],
         job_dir: Path, read_only: List[Path], gpu_minor: Optional[int]) -> Ending:
    ending = Ending()
    usable, why = jail.probe() if limits.sandbox != "off" else (False, "--no-sandbox")
    if not usable and limits.sandbox == "require":
        raise SandboxUnavailable(why)
    if usable and not jail.bwrap_path():
        # it made this process's earlier jails: gone now, which is an attack or a broken
        # install, never a reason to run the submission without one
        raise SandboxUnavailable("bubblewrap, which made this process's earlier jails, is no "
                                 "longer there; reinstall it (apt-get install bubblewrap)")
    jailed = usable
    if not jailed:      # the child writes in folders of this job (no jail: it could anyway)
        for sub in ("work", "work/home", "work/cache", "tmp"):
            (job_dir / sub).mkdir()
    report_r, report_w = os.pipe()
    command_r, command_w = os.pipe()
    job_data = job.to_dict()
    mapped: Dict[Path, str] = {}
    if jailed:
        if job.device.startswith("cuda"):
            job_data["device"] = "cuda"            # the jail shows one GPU, by UUID
        job_data, mapped = jail_paths(job_data)
    (job_dir / "job.json").write_text(json.dumps(
        {"job": job_data, "report_fd": report_w, "command_fd": command_r, "jailed": jailed}))
    env = child_environment(job_dir, job.device, limits, jailed)
    job_file = jail.JAIL_JOB_FILE if jailed else str(job_dir / "job.json")
    inner = [sys.executable, "-s", "-m", "runner.sandbox.child", job_file]
    pass_fds = [report_w, command_r]
    if jailed:
        if job.device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = gpus.uuid_of(job.device)
        hidden = Path(job.challenge_path).resolve()      # shown file by file (jail_paths)
        spec = jail.JailSpec(job_dir=job_dir,
                             read_only=[p.resolve() for p in read_only
                                        if p.resolve() not in mapped and p.resolve() != hidden],
                             mapped=mapped, disk_bytes=limits.disk_bytes,
                             gpu=job.device.startswith("cuda"), gpu_minor=gpu_minor)
        command = jail.command(spec, inner, env)
        popen_env = {"PATH": env["PATH"]}
        ending.isolated = True
    else:
        ending.notes.append(f"not isolated: {why}; the submission ran with this user's rights")
        command, popen_env = inner, env
    group = job_cgroup(limits, ending)
    if group is not None:
        command = group.wrap(command)      # bwrap and all it forks start inside the group
    # the child's output goes to memory files the parent made (no path to swap; the pages are
    # charged to the child's memory, and its file-size limit caps each)
    out = os.fdopen(os.memfd_create("submission-stdout"), "w+b")
    err = os.fdopen(os.memfd_create("submission-stderr"), "w+b")
    reader: Optional[procs.LineReader] = None
    before = set(procs.descendants(os.getpid())) if procs.is_subreaper() else None
    try:
        try:
            proc = subprocess.Popen(command, cwd=job_dir / ("" if jailed else "work"), env=popen_env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    pass_fds=tuple(pass_fds), start_new_session=True,
                                    preexec_fn=None if jailed else _unjailed_child_setup)
        finally:
            for fd in (report_w, command_r):
                os.close(fd)
        reader = procs.LineReader(report_r, MAX_LINE_BYTES)
        try:
            watch(proc, reader, command_w, None if jailed else job_dir, limits, conversation,
                  progress, ending)
        finally:
            if before is not None:
                kill_orphans(before | {proc.pid})
        if group is not None:
            explain_cgroup(group, ending, limits)
        ending.logs = bounded_logs(out, err, limits.output_bytes)
        return ending
    finally:
        if group is not None:
            group.kill_all()
            group.remove()
        if reader is not None:
            reader.close()
        else:
            os.close(report_r)
        os.close(command_w)
        out.close()
        err.close()


def job_cgroup(limits: Limits, ending: Ending) -> Optional[cgroups.JobCgroup]:
    """The job's cgroup: memory (memfds, shared memory and the scratch tmpfs included) and
    tasks enforced by the kernel. Where none can be had, the limits are only polled: said in
    the result, and refused with ``limits.require_cgroup`` (the judge)."""
    try:
        return cgroups.JobCgroup.create("job", limits.host_memory_bytes,
                                        limits.max_threads + limits.max_processes)
    except (cgroups.CgroupUnavailable, cgroups.CgroupError) as exc:
        if limits.require_cgroup:
            raise SandboxUnavailable(f"no cgroup for the job's limits: {exc}") from None
        ending.notes.append(f"memory and processes are counted by polling, not enforced by "
                             f"the kernel: {exc}")
        return None


def explain_cgroup(group: cgroups.JobCgroup, ending: Ending, limits: Limits) -> None:
    """The kernel's word on how the jail ended: an OOM kill in the group is the memory limit,
    whatever the watcher saw (a killed process, a broken pipe, or a grading that went on
    after the kernel killed a process the submission started); a broken protocol stays that."""
    if ending.cause == PROTOCOL or not group.oom_killed():
        return
    ending.finished = False
    ending.cause, ending.limits = KERNEL_MEMORY, limits


def _unjailed_child_setup() -> None:
    """Without a jail, the child still gets resource limits before anything of it runs."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def kill_orphans(known) -> None:
    """SIGKILL the trees of this (subreaper) process's descendants not in ``known``."""
    for pid in procs.descendants(os.getpid()):
        if pid not in known:
            procs.kill_tree(pid)
