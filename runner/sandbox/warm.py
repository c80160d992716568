"""Pre-warmed, single-use jails: a jail started before its submission is known.

A :class:`ParkedJail` is the jail of :mod:`runner.sandbox.parent` (the same bubblewrap command
line, seccomp filter, size-capped tmpfs, cgroup of its own, pipes and memory files), started
early: its child (``runner.sandbox.child`` in its *parked* mode) loads its filter, imports torch,
the submission side and Triton, makes its CUDA context on the grading's GPU, sends one line
(``parked``) and waits on its command pipe. Its grading is then handed to it:

* the job (challenge, solution path, seed, action, ...) goes through the command pipe, never
  through a file the jail can write or a path the parent reads back;
* the jail shows three folders of the parent's own, bound read-only and empty when it starts
  (``/challenge``, ``/submission``, ``/library``); when the job comes, the parent copies the
  challenge's ``loading_files``, the solution and (CUDA) the built library into them: the parent
  writes into its own folders, the jail only reads them;
* the cgroup's limits are set to the job's.

A parked jail serves exactly one grading and is destroyed after it (:meth:`ParkedJail.discard`:
the jail killed, its cgroup emptied and removed, its folder removed): nothing of one grading
reaches the next, which gets a fresh jail started after the previous one was destroyed. Any
problem before the hand-over (the jail died or never said ``parked`` in time, its limits do
not fit the job, its cgroup cannot take the job's limits) raises :class:`WarmUnusable`: the
jail is discarded and the caller grades in a cold jail, as before; nothing of the submission
was shown to the parked jail by then. After the hand-over the grading is watched exactly as a
cold one (:func:`runner.sandbox.watch.watch`).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Callable, Optional, Sequence

from runner import environment, procs
from runner.catalog import loading_files
from runner.output_tail import logs as bounded_logs
from runner.policy import MAX_LINE_BYTES, PARK_WAIT_S
from runner.sandbox import cgroups, gpus, jail
from runner.sandbox.limits import Limits
from runner.sandbox.parent import (SandboxUnavailable, kill_orphans, child_environment,
                                   explain_cgroup, job_cgroup, jail_paths)
from runner.sandbox.watch import Conversation, Ending, watch

PARKED_LINE = "parked"
VIEWS = {"challenge": "/challenge", "submission": "/submission", "library": "/library"}


LIVE: "weakref.WeakSet[ParkedJail]" = weakref.WeakSet()   # discarded at exit, if still there


@atexit.register
def _discard_all() -> None:
    for parked in list(LIVE):
        parked.discard()


class WarmUnusable(Exception):
    """The parked jail cannot take this job (it was discarded; nothing of the job reached it):
    grade in a cold jail instead."""


def _same_device(a: str, b: str) -> bool:
    """Whether two device strings ("cpu", "cuda", "cuda:1") name the same device."""
    def parse(name: str):
        kind, _, index = str(name).partition(":")
        return kind, int(index or 0) if kind == "cuda" else 0
    return parse(a) == parse(b)


def relimit(group: cgroups.JobCgroup, memory_bytes: int, max_pids: int) -> None:
    """The job's limits on a parked jail's group, set the way cgroups.py sets them at its
    creation; OSError where the jail already uses more memory than the new limit. (v1: raising
    the memory limit above memory+swap is refused, so that one is raised first.)"""
    memsw = group.dirs["memory"] / "memory.memsw.limit_in_bytes"
    if group.version == 1 and memory_bytes > group.memory_bytes and memsw.exists():
        memsw.write_text(str(memory_bytes))
    group.memory_bytes, group.max_pids = memory_bytes, max_pids
    group._limit()


class ParkedJail:
    """One jail started ahead of its grading; used at most once, then destroyed."""

    def __init__(self, device: str, limits: Limits, gpu_minor: Optional[int] = None,
                 preload: Sequence[str] = (), challenge_dir: Optional[Path] = None,
                 solution: Optional[Path] = None, gpu_warm: bool = True,
                 gpu_uuid: Optional[str] = None):
        self.device = str(device)
        self.gpu_uuid = gpu_uuid       # given: found without torch (gpus.only_gpu), checked later
        self.gpu_warm = gpu_warm       # False: no CUDA context until warm_gpu() (or the job)
        self.preload = list(preload)
        # known when the jail starts (grade()'s early jail): shown where a cold jail shows them
        # (the solution's whole folder, as a solution may import a module beside it)
        self.challenge_dir = Path(challenge_dir).resolve() if challenge_dir else None
        self.solution = Path(solution).resolve() if solution else None
        self.limits = limits
        self.gpu_minor = gpu_minor
        self.state = "new"           # new -> parked (line seen) -> used | discarded
        self.started_at = time.monotonic()
        self.parked_at: Optional[float] = None
        self.notes = []
        self.proc: Optional[subprocess.Popen] = None
        self.group: Optional[cgroups.JobCgroup] = None
        self.reader: Optional[procs.LineReader] = None
        self.command_w: Optional[int] = None
        self.out = self.err = None
        self.job_dir: Optional[Path] = None

    # -- start ------------------------------------------------------------------------------
    @classmethod
    def start(cls, device: str, limits: Limits, gpu_minor: Optional[int] = None,
              preload: Sequence[str] = (), challenge_dir: Optional[Path] = None,
              solution: Optional[Path] = None, gpu_warm: bool = True,
              gpu_uuid: Optional[str] = None) -> "ParkedJail":
        """Start a parked jail (SandboxUnavailable where no jail or no required cgroup can be
        had: grade cold, which says why or falls back as its limits allow). ``preload``:
        language runtimes to import while parked ("triton", "cupy"). ``challenge_dir`` and
        ``solution``, where already known, are shown as a cold jail shows them (the jail then
        takes only a job for them); else they are copied in when the job comes. ``gpu_warm``
        False: the jail makes no CUDA context while parked until :meth:`warm_gpu` (another
        grading may be timing on the GPU meanwhile)."""
        parked = cls(device, limits, gpu_minor, preload, challenge_dir, solution, gpu_warm,
                     gpu_uuid)
        LIVE.add(parked)
        try:
            parked._start()
        except BaseException:
            parked.discard()
            raise
        return parked

    def _start(self) -> None:
        if self.limits.sandbox == "off":
            raise SandboxUnavailable("--no-sandbox")
        usable, why = jail.probe()
        if not usable or not jail.bwrap_path():
            raise SandboxUnavailable(why)
        gpu = self.device.startswith("cuda")
        self.job_dir = Path(tempfile.mkdtemp(prefix=f"parked-{os.getpid()}-", dir=environment.jobs_root()))
        for name in VIEWS:
            (self.job_dir / name).mkdir(mode=0o755)
            os.chmod(self.job_dir / name, 0o755)
        report_r, report_w = os.pipe()
        command_r, command_w = os.pipe()
        self.command_w = command_w
        try:
            (self.job_dir / "job.json").write_text(json.dumps(
                {"parked": True, "device": "cuda" if gpu else "cpu", "report_fd": report_w,
                 "command_fd": command_r, "jailed": True, "preload": self.preload,
                 "gpu_warm": self.gpu_warm}))
            env = child_environment(self.job_dir, self.device, self.limits, True)
            if gpu:
                self.gpu_uuid = self.gpu_uuid or gpus.uuid_of(self.device)
                env["CUDA_VISIBLE_DEVICES"] = self.gpu_uuid
            mapped = {self.job_dir / name: inside for name, inside in VIEWS.items()}
            if self.challenge_dir is not None and self.solution is not None:
                _, known = jail_paths({"challenge_path": str(self.challenge_dir),
                                       "solution_path": str(self.solution)})
                mapped = {self.job_dir / "library": VIEWS["library"], **known}
            spec = jail.JailSpec(job_dir=self.job_dir, mapped=mapped,
                                 disk_bytes=self.limits.disk_bytes, gpu=gpu, gpu_minor=self.gpu_minor)
            command = jail.command(spec, [sys.executable, "-s", "-m", "runner.sandbox.child",
                                          jail.JAIL_JOB_FILE], env)
            cold = Ending()
            self.group = job_cgroup(self.limits, cold)
            self.notes += cold.notes
            if self.group is not None:
                command = self.group.wrap(command)
            self.out = os.fdopen(os.memfd_create("submission-stdout"), "w+b")
            self.err = os.fdopen(os.memfd_create("submission-stderr"), "w+b")
            self.proc = subprocess.Popen(command, cwd=self.job_dir, env={"PATH": env["PATH"]},
                                         stdin=subprocess.DEVNULL, stdout=self.out,
                                         stderr=self.err, pass_fds=(report_w, command_r),
                                         start_new_session=True)
            self.reader = procs.LineReader(report_r, MAX_LINE_BYTES)
            report_r = -1
        finally:
            for fd in (report_w, command_r):
                os.close(fd)
            if report_r >= 0:
                os.close(report_r)

    # -- waiting ----------------------------------------------------------------------------
    def alive(self) -> bool:
        return (self.state in ("new", "parked") and self.proc is not None
                and self.proc.poll() is None)

    def wait_parked(self, timeout_s: float) -> bool:
        """Whether the jail has said ``parked`` (waiting up to ``timeout_s``). A jail that died,
        or said anything else first, is discarded (False)."""
        if self.state == "parked":
            return self.alive()
        if self.state != "new" or self.reader is None:
            return False
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            lines = self.reader.read(timeout=min(0.1, max(0.0, deadline - time.monotonic())),
                                     max_lines=1)
            if lines:
                try:
                    record = json.loads(lines[0])
                except ValueError:
                    record = None
                if isinstance(record, dict) and record.get("kind") == PARKED_LINE:
                    self.state = "parked"
                    self.parked_at = time.monotonic()
                    return True
                self.discard()
                return False
            if self.proc is None or self.proc.poll() is not None or self.reader.finished:
                self.discard()
                return False
            if time.monotonic() >= deadline:
                return False

    def warm_gpu(self) -> None:
        """Tell a jail parked without its CUDA context to make it now (a few bytes on its
        command pipe, read before its job: never blocks; nothing when it is gone)."""
        if self.gpu_warm or self.command_w is None or self.state not in ("new", "parked"):
            return
        self.gpu_warm = True
        try:
            os.set_blocking(self.command_w, False)
            os.write(self.command_w, b'{"kind": "warm-gpu"}\n')
        except OSError:
            pass
        finally:
            try:
                os.set_blocking(self.command_w, True)
            except OSError:
                pass

    def fits(self, device: str, limits: Limits) -> str:
        """'' when this jail can grade a job on ``device`` under ``limits``, else why not."""
        if not _same_device(self.device, str(device)):
            return f"parked for {self.device}, not {device}"
        if limits.sandbox == "off":
            return "the job runs without a sandbox"
        if limits.disk_bytes != self.limits.disk_bytes:
            return "its scratch space has another size"
        if limits.require_cgroup and self.group is None:
            return "it has no cgroup"
        if self.device.startswith("cuda") and (self.gpu_uuid or "").lower() != gpus.uuid_of(
                str(device)).lower():
            return "it shows another GPU"
        return ""

    def shows(self, challenge_dir: Path, solution: Path) -> str:
        """'' when the jail can show this challenge and solution, else why not."""
        if self.challenge_dir is None and self.solution is None:
            return ""        # copied in when the job comes
        if (self.challenge_dir != Path(challenge_dir).resolve()
                or self.solution != Path(solution).resolve()):
            return "it was started for another challenge or solution"
        return ""

    # -- one grading ------------------------------------------------------------------------
    def grade(self, job, challenge_dir: Path, solution: Path, library: Optional[Path],
              limits: Limits, conversation: Conversation,
              progress: Callable[[str], None]) -> Ending:
        """Hand ``job`` to the jail and watch its grading (as :func:`parent.run_in_child`).
        WarmUnusable (the jail discarded) when it cannot take it; the jail is destroyed when
        this returns, whatever happened."""
        try:
            if self.state not in ("new", "parked"):
                raise WarmUnusable(f"this jail is {self.state}: a jail serves one grading")
            why = self.fits(job.device, limits) or self.shows(challenge_dir, solution)
            if not why and not self.wait_parked(min(limits.startup_s, PARK_WAIT_S)):
                why = "the parked jail did not start"
            if not why and not self.alive():
                why = "the parked jail has died"
            if not why and self.group is not None:
                try:
                    relimit(self.group, limits.host_memory_bytes,
                            limits.max_threads + limits.max_processes)
                except OSError as exc:
                    why = f"its cgroup cannot take the job's limits ({exc})"
            if why:
                raise WarmUnusable(why)
            self.state = "used"
            job_data = self._show(job, Path(challenge_dir), Path(solution), library)
            return self._watch(job_data, limits, conversation, progress)
        finally:
            self.discard()

    def _show(self, job, challenge_dir: Path, solution: Path, library: Optional[Path]):
        """Copy what the job needs into the jail's read-only folders; the job as the jail sees it."""
        assert self.job_dir is not None
        job_data = job.to_dict()
        if job.device.startswith("cuda"):
            job_data["device"] = "cuda"          # the jail shows one GPU, by UUID
        if self.solution is not None:            # shown since the start, as a cold jail does
            job_data, _ = jail_paths(job_data)
        else:
            challenge_dir = challenge_dir.resolve()
            difficulty = challenge_dir.parent.name or "challenges"
            target = self.job_dir / "challenge" / difficulty / challenge_dir.name
            target.mkdir(parents=True)
            for path in loading_files(challenge_dir):     # never its references or tests
                shutil.copyfile(path, target / path.name)
            os.chmod(target.parent, 0o755)
            shutil.copyfile(solution, self.job_dir / "submission" / solution.name)
            job_data["challenge_path"] = f"{VIEWS['challenge']}/{difficulty}/{challenge_dir.name}"
            job_data["solution_path"] = f"{VIEWS['submission']}/{solution.name}"
        if library is not None:
            shutil.copyfile(library, self.job_dir / "library" / library.name)
            os.chmod(self.job_dir / "library" / library.name, 0o444)
            job_data["library_path"] = f"{VIEWS['library']}/{library.name}"
        for folder in self.job_dir.glob("*/**"):
            if folder.is_dir():
                os.chmod(folder, 0o755)
        return job_data

    def _watch(self, job_data, limits: Limits, conversation: Conversation,
               progress: Callable[[str], None]) -> Ending:
        assert self.proc is not None and self.reader is not None and self.command_w is not None
        ending = Ending(isolated=True, notes=list(self.notes))
        for f in (self.out, self.err):      # what the warm-up printed is not the submission's
            f.truncate(0)
            f.seek(0)
        before = set(procs.descendants(os.getpid())) if procs.is_subreaper() else None
        data = (json.dumps({"kind": "job", "job": job_data}) + "\n").encode()
        try:
            os.write(self.command_w, data)   # small: the pipe takes it without blocking
        except OSError:
            pass                             # the jail died just now: its exit decides
        try:
            watch(self.proc, self.reader, self.command_w, None, limits, conversation,
                  progress, ending)
        finally:
            if before is not None:
                kill_orphans(before | {self.proc.pid})
        if self.group is not None:
            explain_cgroup(self.group, ending, limits)
        ending.logs = bounded_logs(self.out, self.err, limits.output_bytes)
        return ending

    # -- the end ----------------------------------------------------------------------------
    def discard(self) -> None:
        """Destroy the jail: kill it (its PID namespace with it), empty and remove its cgroup,
        close its pipes and memory files, remove its folder. Idempotent; never waits longer
        than ``limits.kill_wait_s`` plus the cgroup's bounds."""
        if self.state == "discarded":
            return
        self.state = "discarded"
        proc = self.proc
        if proc is not None:
            procs.kill_tree(proc.pid if proc.poll() is None else None, groups=[proc.pid],
                            sessions=[proc.pid])
            if not procs.wait_exited(proc, self.limits.kill_wait_s):
                procs.reap_later(proc)
        if self.group is not None:
            self.group.kill_all()
            self.group.remove()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.command_w is not None:
            try:
                os.close(self.command_w)
            except OSError:
                pass
            self.command_w = None
        for f in (self.out, self.err):
            if f is not None:
                f.close()
        self.out = self.err = None
        if self.job_dir is not None:
            shutil.rmtree(self.job_dir, ignore_errors=True)

    def __del__(self):  # a forgotten jail: never left running
        try:
            self.discard()
        except Exception:  # noqa: BLE001
            pass


def start_for_cli(device: str, challenge_dir: Path, solution: Path, language: str,
                  sandbox: bool) -> Optional[ParkedJail]:
    """The CLI's jail, started before the CLI imports torch (its interpreter, torch and CUDA
    context start beside the CLI's own), where the device is known without torch: ``cpu``, or
    ``auto``/``cuda`` on a machine with one GPU (:func:`gpus.only_gpu`). None elsewhere (the
    grading starts its jail after torch's import, as ``grade`` does)."""
    if not sandbox or not environment.warm_start():
        return None
    gpu = gpus.only_gpu()
    if device == "cpu" or (device == "auto" and not gpus.DRIVER_GPUS.exists()):
        name, uuid, minor = "cpu", None, None
    elif device in ("auto", "cuda", "cuda:0") and gpu is not None:
        name, (uuid, minor) = "cuda:0", gpu
    else:
        return None
    return start_quietly(name, Limits(), minor,
                         preload=[language] if language in ("triton", "cupy") else [],
                         challenge_dir=challenge_dir, solution=solution, gpu_uuid=uuid)


def start_quietly(device: str, limits: Limits, gpu_minor: Optional[int] = None,
                  preload: Sequence[str] = (), log: Callable[[str], None] = lambda m: None,
                  **known) -> Optional[ParkedJail]:
    """A parked jail, or None where none can be started here (the grading then goes cold)."""
    try:
        return ParkedJail.start(device, limits, gpu_minor, preload, **known)
    except (SandboxUnavailable, cgroups.CgroupError, cgroups.CgroupUnavailable, OSError) as exc:
        log(f"no parked jail: {exc}")
        return None
