"""One grading's process as the worker sees it: started in a session of its own with a
scrubbed environment and a private folder, its output read without blocking, and stopped
within bounds however it is stuck."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from runner import environment, procs
from runner.judge.worker.settings import WorkerSettings
from runner.sandbox.parent import ENV_PASSTHROUGH, RUNNER_ROOT

MAX_RESULT_BYTES = 64 << 20             # one line of the job process (a result) at most
PARKED_SPEC = "job.json"                # a parked job process's job, in its own folder


def job_environment(settings: WorkerSettings, home: Path) -> Dict[str, str]:
    """The job process's environment: what building and running needs, only this worker's
    GPU visible (none for a CPU slot), and nothing secret."""
    env = environment.inherited(ENV_PASSTHROUGH)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    cache = slot_cache_folder(settings)
    env.update(PYTHONPATH=str(RUNNER_ROOT), PYTHONUNBUFFERED="1", HOME=str(home),
               TMPDIR=str(home), CUDA_VISIBLE_DEVICES="" if settings.gpu is None else str(settings.gpu),
               # the grader's own measurements (the device's ceiling, case floors), the
               # kernels of its probes and the CUDA libraries it built (nvcc in a jail of its
               # own), kept for the slot's next jobs; a jailed submission never sees this
               # folder (its Triton cache is private to its job, its library a copy)
               CHALLENGE_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
    env.pop("NVIDIA_VISIBLE_DEVICES", None)
    if settings.gpu is None:
        env["TRITON_INTERPRET"] = "1"
    return env


UNREAPED: List[subprocess.Popen] = []     # job processes being reaped in the background


def jobs_folder(settings: WorkerSettings) -> Path:
    """Where this slot's jobs keep their temporary files (only its lock holder uses it): in
    ``jobs_root`` (``serve`` puts it in its data folder), else in $TMPDIR."""
    root = settings.jobs_root or environment.tmp_dir()
    return root / f"judge-jobs-{settings.slot_name}"


def slot_cache_folder(settings: WorkerSettings) -> Path:
    """What this slot's job processes measure once and keep (beside its jobs folder)."""
    return jobs_folder(settings).with_name(f"judge-cache-{settings.slot_name}")


def remove_stale_jobs(settings: WorkerSettings) -> None:
    """What jobs of an earlier worker of this slot left (it was killed before cleaning up)."""
    folder = jobs_folder(settings)
    try:
        stale = list(folder.iterdir())
    except OSError:
        return
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


class JobProcess:
    """One grading's process (:mod:`runner.judge.worker.jobrun`), in a session of its own and a
    private temporary folder, with its stdout read without blocking."""

    # tests put a stand-in here
    command = [sys.executable, "-s", "-m", "runner.judge.worker.jobrun"]

    def __init__(self, spec: Optional[Dict[str, Any]], settings: WorkerSettings):
        """``spec`` None: a parked job process (:mod:`runner.judge.worker.prewarm`), started before
        its job, which :meth:`hand` gives it later."""
        # every temporary file of the job (the sandbox's too) goes here, removed after the job
        # even when the job process was SIGKILLed before cleaning up (and, after a crash of the
        # worker, by the next worker of this slot)
        folder = jobs_folder(settings)
        folder.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="job-", dir=folder))
        self.stopped = False
        self.started_at = time.monotonic()
        self._go: Optional[int] = None
        command = list(self.command)
        if spec is None:
            command += ["--parked", settings.device, settings.sandbox]
        # the job goes in through a file, not a pipe: no write can block on a child that
        # does not read (a parked process is told to read it by one short line on a pipe)
        with tempfile.TemporaryFile(dir=self.home) as spec_file:
            if spec is not None:
                spec_file.write(json.dumps(spec).encode())
                spec_file.seek(0)
                stdin: Any = spec_file
            else:
                stdin, self._go = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                self.proc = subprocess.Popen(command, stdin=stdin, stdout=out_w,
                                             stderr=err_w, cwd=str(self.home),
                                             env=job_environment(settings, self.home),
                                             start_new_session=True)
            except BaseException:
                for fd in (out_r, err_r):
                    os.close(fd)
                if self._go is not None:
                    os.close(self._go)
                raise
            finally:
                os.close(out_w)
                os.close(err_w)
                if spec is None:
                    os.close(stdin)
        self.out = procs.LineReader(out_r, MAX_RESULT_BYTES)
        self.err = procs.TailReader(err_r)

    def gpu_free(self) -> None:
        """Tell a parked job process that the GPU is free: it (and its jail) may make their
        CUDA contexts now. A few bytes on its stdin: never blocks; nothing when it is gone."""
        if self._go is None or self.proc.poll() is not None:
            return
        try:
            os.set_blocking(self._go, False)
            os.write(self._go, b"gpu\n")
        except OSError:
            pass

    def hand(self, spec: Dict[str, Any]) -> bool:
        """Give a parked job process its job: the spec in a file of its folder, then one line
        on its stdin (a few bytes: never blocks). False when it is gone (stop it and start a
        cold one)."""
        if self._go is None or self.proc.poll() is not None:
            return False
        go, self._go = self._go, None
        try:
            path = self.home / PARKED_SPEC
            path.write_text(json.dumps(spec))
            os.set_blocking(go, False)
            return os.write(go, b"go\n") == 3
        except OSError:
            return False
        finally:
            os.close(go)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float) -> List[bytes]:
        lines = self.out.read(timeout)
        self.err.pump()
        return lines

    def output_closed(self) -> bool:
        return self.out.finished

    def returncode(self, wait_s: float) -> Optional[int]:
        procs.wait_exited(self.proc, wait_s)
        return self.proc.returncode

    def stderr_tail(self) -> str:
        self.err.pump()
        return self.err.text()

    def _groups(self) -> List[int]:
        table = procs.process_table()
        return sorted({self.pid} | {table[p].pgid for p in procs.descendants(self.pid, table)
                                    if p in table})

    def kill_now(self) -> None:
        """SIGKILL the process and its whole tree; never waits."""
        alive = self.proc.poll() is None
        procs.kill_tree(self.pid if alive else None, groups=self._groups() if alive else [self.pid],
                        sessions=[self.pid])

    def stop(self, exit_grace_s: float, term_grace_s: float, kill_wait_s: float,
             sweep_all: bool = False, spare: Sequence[int] = ()) -> List[int]:
        """Let it exit by itself for ``exit_grace_s`` s; then SIGTERM its process group (the
        job process then kills its sandbox and leaves), for ``term_grace_s`` s; then SIGKILL
        its whole tree, its groups and its session, for ``kill_wait_s`` s. Then kill what is
        left of it (``sweep_all``: every descendant of this worker, which is a subreaper).
        Returns the pids still not exited; a job process among them is reaped in the
        background. Never blocks longer than the three waits together. ``spare``: processes
        (with their trees) the sweep leaves alone (the next job's parked process)."""
        self.stopped = True
        try:
            if self.proc.poll() is None and exit_grace_s > 0:
                procs.wait_exited(self.proc, exit_grace_s)
            if self.proc.poll() is None:
                try:
                    os.killpg(self.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
                procs.wait_exited(self.proc, term_grace_s)
            signalled = set()
            if self.proc.poll() is None:
                signalled |= procs.kill_tree(self.pid, groups=self._groups(), sessions=[self.pid])
                procs.wait_exited(self.proc, kill_wait_s)
            # what it left behind: its session and group, and orphans re-parented here
            signalled |= procs.kill_tree(None, groups=[self.pid], sessions=[self.pid])
            if sweep_all and not spare:
                signalled |= procs.kill_tree(os.getpid(), include_root=False)
            elif sweep_all:
                table = procs.process_table()
                keep = set(spare) | {d for p in spare for d in procs.descendants(p, table)}
                for child, info in table.items():
                    if info.ppid == os.getpid() and child not in keep:
                        signalled |= procs.kill_tree(child)
            left = procs.wait_gone(signalled - {self.pid}, kill_wait_s if signalled else 0)
            if self.proc.poll() is None:
                UNREAPED[:] = [p for p in UNREAPED if p.poll() is None] + [self.proc]
                procs.reap_later(self.proc)
                left = [self.pid] + left
            return left
        finally:
            if self._go is not None:
                os.close(self._go)
                self._go = None
            self.out.close()
            self.err.close()
            shutil.rmtree(self.home, ignore_errors=True)
