"""A worker: one process bound to one GPU (or one CPU slot), grading one submission at a time.

It talks only to the judge's API (HTTP, with a token that has the worker role; it holds no
database credentials), and in a fleet also reads submission ids from its accelerator's
Dramatiq queue. For each job it: leases the submission, starts :mod:`runner.judge.jobrun`
with only its GPU visible, renews the lease every ``heartbeatSeconds`` while the job runs,
forwards progress as events, and stores the result. Faults of its own (the job process dies
without a result) are reported with ``release``, which retries the submission elsewhere;
a lease taken back (``409`` on a heartbeat) stops the job at once.

Nothing in a job's path waits without a bound, however the job process is stuck (in native
code, ignoring SIGTERM, with descendants holding its pipes, or not reaped for seconds after
SIGKILL while the GPU driver tears its context down): its output is read without blocking; the
result is stored as soon as it is written, before the process has exited; the watchdog
(``timeLimitSeconds`` + ``--watchdog-margin``) stores ``time_limit_exceeded``; the process is
stopped with SIGTERM, then SIGKILL of its whole tree, each with a bounded wait, and one that
still has not exited is reaped in the background while the worker goes on. As a last resort,
a worker whose job thread is stuck past every one of those bounds stops renewing the lease,
releases it and exits, so that its supervisor starts a fresh one and the submission is retried.

``python -m runner.judge.worker --url URL --accelerator NAME (--gpu N | --cpu SLOT)`` with the
token in ``$JUDGE_WORKER_TOKEN``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx

from runner import procs
from runner.exit_codes import EXIT_STUCK
from runner.judge.protocol import status_of_progress
from runner.judge.queues import BrokerFeed
from runner.sandbox import jail
from runner.sandbox.parent import ENV_PASSTHROUGH, RUNNER_ROOT

log = logging.getLogger("runner.judge.worker")
TOKEN_ENV = "JUDGE_WORKER_TOKEN"
STARTUP_ALLOWANCE_S = 60.0   # the watchdog's extra time before a job's first progress line
LOCK_DIR_ENV = "JUDGE_LOCK_DIR"         # where the one-worker-per-GPU lock files live
PRESENCE_EVERY_S = 5.0                  # how often a worker tells the API it is serving
CRASH_ENV = "JUDGE_WORKER_CRASH_AT"     # for fault-injection tests: "claimed" or "result"
MAX_RESULT_BYTES = 64 << 20             # one line of the job process (a result) at most
MAX_EVENTS_PER_READ = 5                 # more progress lines at once: only the latest is posted


def crash_point(name: str) -> None:
    """Die here with SIGKILL when ``$JUDGE_WORKER_CRASH_AT`` names this point (tests use it to
    kill a worker at an exact stage: after its claim, or holding a result not yet stored)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class LeaseLost(Exception):
    """The API took the lease back (or the submission is finished): stop this job."""


class SlotBusy(Exception):
    """Another worker holds this GPU (one job per GPU)."""


@dataclass
class WorkerSettings:
    url: str
    token: str
    accelerator: str
    gpu: Optional[int] = None          # None: a CPU slot
    slot: str = "0"
    name: str = ""
    challenge_dirs: List[str] = field(default_factory=list)
    watchdog_margin_s: float = 30.0
    claim_wait_s: float = 10.0
    lock_dir: Path = field(default_factory=lambda: machine_lock_dir())
    jobs_root: Optional[Path] = None   # the slot's jobs folder goes here (default $TMPDIR)
    parent_pid: Optional[int] = None   # started by a supervisor: stop when it is gone
    sandbox: str = "require"           # "auto" (--allow-unsandboxed): grade even without a jail
    startup_allowance_s: float = STARTUP_ALLOWANCE_S
    redis_url: Optional[str] = None    # a fleet: take submission ids from Dramatiq
    namespace: str = "judge"
    heartbeat_timeout_ms: int = 60_000
    maintenance_chance: int = 1000
    result_retry_s: float = 120.0      # keep offering a result this long while the API is down
    term_grace_s: float = 3.0          # a job process being stopped: SIGTERM, then this long
    kill_wait_s: float = 10.0          # after SIGKILL, wait this long for it to be reaped
    stuck_grace_s: float = 30.0        # past every bound by this much: the worker gives up

    @property
    def slot_name(self) -> str:
        return f"gpu{self.gpu}" if self.gpu is not None else f"cpu{self.slot}"

    @property
    def device(self) -> str:
        return "cuda" if self.gpu is not None else "cpu"


def job_environment(settings: WorkerSettings, home: Path) -> Dict[str, str]:
    """The job process's environment: what building and running needs, only this worker's
    GPU visible (none for a CPU slot), and nothing secret."""
    env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(PYTHONPATH=str(RUNNER_ROOT), PYTHONUNBUFFERED="1", HOME=str(home),
               TMPDIR=str(home), CUDA_VISIBLE_DEVICES="" if settings.gpu is None else str(settings.gpu))
    env.pop("NVIDIA_VISIBLE_DEVICES", None)
    if settings.gpu is None:
        env["TRITON_INTERPRET"] = "1"
    return env


def machine_lock_dir() -> Path:
    """Where locks shared by every judge on this machine live (a GPU's)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or os.environ.get("XDG_RUNTIME_DIR") or "/tmp")


def _lock(path: Path, what: str, advice: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SlotBusy(f"{what} is already held by {holder} ({path}): {advice}")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


class SlotLocks:
    """The lock files a worker holds for its lifetime."""

    def __init__(self, handles):
        self.handles = handles

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def hold_slot(settings: WorkerSettings) -> SlotLocks:
    """Exclusive locks for this worker's slot: in ``settings.lock_dir`` (one judge's own, so
    judges with different data folders never collide on a CPU slot) and, for a GPU, also in
    :func:`machine_lock_dir`: one worker per GPU on the machine, whichever judge it serves
    (two gradings on one GPU would skew each other's times)."""
    slot = settings.slot_name
    handles = [_lock(settings.lock_dir / f"judge-{slot}.lock", slot,
                     "one worker per slot; stop the other worker, pick another --gpu/--cpu "
                     "slot, or give this judge its own --data-dir")]
    if settings.gpu is not None:
        machine = machine_lock_dir() / f"judge-{slot}.lock"
        if machine.resolve() != (settings.lock_dir / f"judge-{slot}.lock").resolve():
            try:
                handles.append(_lock(machine, f"GPU {settings.gpu}",
                                     "one worker per GPU on this machine, whichever judge it "
                                     "serves; stop the other judge's worker or leave this GPU "
                                     "out (workers: gpus:...)"))
            except SlotBusy:
                handles[0].close()
                raise
    return SlotLocks(handles)


class Api:
    """The judge's worker endpoints."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.http = httpx.Client(base_url=settings.url.rstrip("/"), timeout=30.0,
                                 headers={"Authorization": f"Bearer {settings.token}"})

    def _post(self, path: str, body: Dict[str, Any], timeout: Optional[float] = None) -> httpx.Response:
        body = {"worker": self.settings.name, **body}
        return self.http.post(path, json=body, timeout=timeout or 30.0)

    def claim(self, submission_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
        wait = 0 if submission_id else self.settings.claim_wait_s
        r = self._post("/api/v1/worker/claim",
                       {"accelerators": [self.settings.accelerator], "wait": wait,
                        "submissionId": submission_id}, timeout=wait + 30)
        if r.status_code == 204:
            return None
        if r.status_code in (401, 403):
            raise SystemExit(f"the judge refused this worker's token: {r.text[:200]}")
        r.raise_for_status()
        return r.json()

    def heartbeat(self, sid: str, lease: str) -> None:
        r = self._post(f"/api/v1/worker/{sid}/heartbeat", {"lease": lease})
        if r.status_code == 409:
            raise LeaseLost(sid)
        r.raise_for_status()

    def event(self, sid: str, lease: str, status: str, output: Any) -> None:
        r = self._post(f"/api/v1/worker/{sid}/events", {"lease": lease, "status": status,
                                                         "output": output}, timeout=10.0)
        if r.status_code == 409:
            raise LeaseLost(sid)
        r.raise_for_status()

    def complete(self, sid: str, lease: str, result: Dict[str, Any]) -> str:
        r = self._post(f"/api/v1/worker/{sid}/complete", {"lease": lease, "result": result})
        if r.status_code == 409:
            return str(r.json().get("reason", "stale"))
        r.raise_for_status()
        return "stored"

    def release(self, sid: str, lease: str, reason: str) -> None:
        self._post(f"/api/v1/worker/{sid}/release", {"lease": lease, "reason": reason})

    def presence(self, state: str, reason: str = "") -> None:
        r = self._post("/api/v1/worker/presence", {"accelerator": self.settings.accelerator,
                                                    "state": state, "reason": reason},
                       timeout=10.0)
        r.raise_for_status()

    def close(self) -> None:
        self.http.close()


class Worker:
    def __init__(self, settings: WorkerSettings):
        if not settings.name:
            settings.name = f"{socket.gethostname()}-{settings.slot_name}"
        self.settings = settings
        self.api = Api(settings)
        self.stop = threading.Event()
        self.feed = None
        self._current_job: Optional[JobProcess] = None
        self._must_finish_by: Optional[float] = None
        self._subreaper = False
        if settings.redis_url:
            self.feed = BrokerFeed(settings.redis_url, settings.accelerator, settings.namespace,
                                   settings.heartbeat_timeout_ms, settings.maintenance_chance)

    # -- the loop -------------------------------------------------------------------------------
    def _parent_gone(self) -> None:
        log.warning("the supervisor (pid %s) is gone; stopping", self.settings.parent_pid)
        self.stop.set()

    def _announce(self) -> None:
        """Tell the API every few seconds that this worker serves its accelerator (what
        /healthz counts), whether it is idle or grading."""
        while True:
            try:
                self.api.presence("ready")
            except Exception as exc:  # noqa: BLE001 - the loop logs the API's absence
                log.debug("presence: %s", exc)
            if self.stop.wait(PRESENCE_EVERY_S):
                return

    def say_unavailable(self, reason: str) -> None:
        """Best effort: tell the API why this worker cannot serve (shown in /healthz and to
        the submissions it would have taken)."""
        try:
            self.api.presence("unavailable", reason)
        except Exception as exc:  # noqa: BLE001 - the judge may be down too
            log.debug("could not report to the judge: %s", exc)

    def run_forever(self) -> None:
        lock = hold_slot(self.settings)
        remove_stale_jobs(self.settings)      # we hold the slot: nobody else uses its folder
        threading.Thread(target=self._announce, daemon=True, name="presence").start()
        # orphans of a job (a process that left its session) are re-parented here, where
        # _stop_job finds them before the next job starts on this GPU
        self._subreaper = procs.become_subreaper()
        if self.settings.parent_pid is not None:
            procs.when_parent_dies(self.settings.parent_pid, self._parent_gone, 1.0, self.stop)
        log.info("worker %s serving %s on %s", self.settings.name, self.settings.accelerator,
                 self.settings.slot_name)
        try:
            while not self.stop.is_set():
                try:
                    self.run_once()
                except (httpx.HTTPError, OSError) as exc:
                    log.warning("the judge is unreachable (%s); retrying", exc)
                    self.stop.wait(1.0)
                except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end the worker
                    log.warning("worker loop: %s: %s; retrying", type(exc).__name__, exc)
                    self.stop.wait(1.0)
        finally:
            lock.close()
            try:
                self.api.presence("stopped")
            except Exception:  # noqa: BLE001 - the judge may be gone first
                pass
            self.api.close()
            if self.feed is not None:
                self.feed.close()

    def run_once(self) -> bool:
        """Take and grade at most one job; True when one was graded."""
        if self.feed is None:
            job = self.api.claim()
            if job is None:
                return False
            self.grade(job)
            return True
        message = self.feed.next()
        if message is None:
            return False
        try:
            job = self.api.claim(submission_id=str(message.args[0]))
        except (httpx.HTTPError, OSError):
            self.feed.give_back(message)
            raise
        if job is not None:
            self.grade(job)
        self.feed.done(message)     # acknowledged only after the job (or when not ours)
        return job is not None

    # -- one job --------------------------------------------------------------------------------
    def grade(self, claim: Dict[str, Any]) -> None:
        sid, lease = claim["submissionId"], claim["lease"]
        crash_point("claimed")
        lost = threading.Event()
        done = threading.Event()
        limit = float(claim["timeLimitSeconds"])
        stop_bound = self._stop_bound()
        # the heartbeat thread gives up on this worker if the job thread is still busy here
        # (the job's own watchdog allows its start-up on top of the time limit)
        self._must_finish_by = (time.monotonic() + limit + self.settings.watchdog_margin_s
                                + self.settings.startup_allowance_s
                                + stop_bound + self.settings.stuck_grace_s)
        beat = threading.Thread(target=self._heartbeats,
                                args=(sid, lease, float(claim["heartbeatSeconds"]), lost, done),
                                daemon=True)
        beat.start()
        job: Optional[JobProcess] = None
        try:
            verdict, job = self._run_job(claim, lost)
            if verdict["kind"] == "result" and verdict.get("early"):
                # the job process wrote its result: store it now, then stop the process (its
                # exit may take seconds: a GPU context torn down)
                self._must_finish_by = (time.monotonic() + self.settings.result_retry_s
                                        + stop_bound + self.settings.stuck_grace_s)
                crash_point("result")
                self._deliver(sid, lease, verdict["result"])
                self._stop_job(job, wait_for_exit=True)
                return
            self._must_finish_by = (time.monotonic() + stop_bound + self.settings.result_retry_s
                                    + self.settings.stuck_grace_s)
            self._stop_job(job)
            if verdict["kind"] == "lost":
                log.info("%s: lease taken back; dropped", sid)
            elif verdict["kind"] == "fault":
                log.warning("%s: %s; releasing it for a retry", sid, verdict["reason"])
                self._quietly(self.api.release, sid, lease, verdict["reason"])
            else:
                crash_point("result")
                self._deliver(sid, lease, verdict["result"])
        except (httpx.HTTPError, OSError):
            raise                                   # the judge unreachable: the loop retries
        except Exception:
            # our bug: say so in full, and hand the submission back now rather than when its
            # lease expires (it is retried, within the retry budget)
            log.exception("%s: grading failed inside the worker; releasing it for a retry", sid)
            self._quietly(self.api.release, sid, lease, "the worker failed (an internal error)")
        finally:
            job = job or self._current_job
            if job is not None:
                self._stop_job(job)
            self._current_job = None
            self._must_finish_by = None
            done.set()
            beat.join(timeout=5)

    def _stop_bound(self) -> float:
        """The longest :meth:`_stop_job` can take."""
        return 2 * self.settings.term_grace_s + 2 * self.settings.kill_wait_s

    def _stop_job(self, job: "JobProcess", wait_for_exit: bool = False) -> None:
        """Stop the job process (if still running) and everything it started, with bounded
        waits; at most once per job."""
        if job.stopped:
            return
        grace = self.settings.term_grace_s if wait_for_exit else 0.0
        left = job.stop(exit_grace_s=grace, term_grace_s=self.settings.term_grace_s,
                        kill_wait_s=self.settings.kill_wait_s, sweep_all=self._subreaper)
        if left:
            log.warning("%d process(es) of the last job had not exited %g s after SIGKILL (a GPU "
                        "context still being torn down?): %s; taking the next job anyway",
                        len(left), self.settings.kill_wait_s, left)
        if self._subreaper:
            procs.reap_zombie_children(skip=[p.pid for p in _UNREAPED if p.poll() is None])

    def _heartbeats(self, sid: str, lease: str, interval: float, lost: threading.Event,
                    done: threading.Event) -> None:
        while not done.wait(interval):
            limit = self._must_finish_by
            if limit is not None and time.monotonic() > limit:
                self._abandon(sid, lease)
                return
            if lost.is_set():
                continue          # no lease to renew; still watching the job thread
            try:
                self.api.heartbeat(sid, lease)
            except LeaseLost:
                lost.set()
                continue
            except (httpx.HTTPError, OSError) as exc:
                log.warning("%s: heartbeat failed (%s); grading goes on", sid, exc)
            if self.feed is not None:
                self._quietly(self.feed.heartbeat)

    def _abandon(self, sid: str, lease: str) -> None:
        """The job thread is stuck past every bound (a bug, or a wait nothing here bounds):
        stop renewing the lease, kill the job, hand the submission back and exit; the
        supervisor starts a fresh worker and the submission is retried."""
        log.critical("%s: the job thread is stuck past every time bound; releasing the "
                     "submission and exiting (code %d) so that a fresh worker takes over",
                     sid, EXIT_STUCK)
        job = self._current_job
        if job is not None:
            job.kill_now()
        try:
            self.api.http.post(f"/api/v1/worker/{sid}/release",
                               json={"worker": self.settings.name, "lease": lease,
                                     "reason": "the worker was stuck and restarted"}, timeout=5)
        except Exception:  # noqa: BLE001 - the lease expires anyway
            pass
        logging.shutdown()
        os._exit(EXIT_STUCK)

    def _quietly(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - best effort; the reaper covers the rest
            log.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)

    def _post_progress(self, sid: str, lease: str, lines: List[str], lost: threading.Event) -> None:
        if len(lines) > MAX_EVENTS_PER_READ:
            lines = lines[-1:]        # a burst: the latest says where grading is
        for line in lines:
            try:
                self.api.event(sid, lease, status_of_progress(line), line)
            except LeaseLost:
                lost.set()
                return
            except (httpx.HTTPError, OSError):
                pass      # progress is best effort; the result is not

    def _run_job(self, claim: Dict[str, Any], lost: threading.Event):
        """Start the job process and follow it until its result, the watchdog, a lost lease or
        the worker's stop: (verdict, job process). Returns as soon as the result is read,
        without waiting for the process to exit (``verdict["early"]``)."""
        sid, lease = claim["submissionId"], claim["lease"]
        spec = {"job": claim["job"], "device": self.settings.device,
                "timeLimitSeconds": claim["timeLimitSeconds"],
                "hostMemoryBytes": claim["hostMemoryBytes"],
                "challengeDirs": self.settings.challenge_dirs,
                "sandbox": self.settings.sandbox}
        limit = float(claim["timeLimitSeconds"])
        # the time limit counts from the moment the submission's side is up (its first
        # progress line); until then, starting it (and the reference's plan) gets its own allowance
        margin = self.settings.watchdog_margin_s
        deadline = time.monotonic() + limit + margin + self.settings.startup_allowance_s
        started = False
        job = JobProcess(spec, self.settings)
        self._current_job = job
        while True:
            progress: List[str] = []
            for raw in job.read(timeout=0.2):
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if "result" in msg and isinstance(msg["result"], dict):
                    self._post_progress(sid, lease, progress, lost)
                    return {"kind": "result", "result": msg["result"], "early": True}, job
                if "progress" in msg:
                    progress.append(str(msg["progress"])[:300])
                    if not started:
                        started = True
                        deadline = time.monotonic() + limit + margin
            self._post_progress(sid, lease, progress, lost)
            if job.output_closed():
                code = job.returncode(wait_s=2.0)
                return {"kind": "fault", "reason": f"the grading process ended with code {code} "
                        f"and no result: {job.stderr_tail().strip()[-500:]}"}, job
            if lost.is_set():
                return {"kind": "lost"}, job
            if time.monotonic() > deadline:
                return {"kind": "result", "result": {
                    "verdict": "time_limit_exceeded",
                    "message": f"grading did not finish within the limit of {limit:g} s "
                               f"(stopped by the worker's watchdog)",
                    "challenge": claim["job"]["challenge"],
                    "language": claim["job"]["language"], "action": claim["job"]["action"],
                    "seed": claim["job"]["seed"]}}, job
            if self.stop.is_set():
                return {"kind": "fault", "reason": "the worker was stopped"}, job

    def _deliver(self, sid: str, lease: str, result: Dict[str, Any]) -> None:
        """Offer the result until the API answers (stored, or refused as stale/duplicate)."""
        deadline = time.monotonic() + self.settings.result_retry_s
        while True:
            try:
                outcome = self.api.complete(sid, lease, result)
                log.info("%s: %s (%s)", sid, result.get("verdict"), outcome)
                return
            except (httpx.HTTPError, OSError) as exc:
                if time.monotonic() > deadline:
                    log.warning("%s: could not store the result (%s); the reaper will retry "
                                "the submission", sid, exc)
                    return
                time.sleep(1.0)


_UNREAPED: List[subprocess.Popen] = []     # job processes being reaped in the background


def jobs_folder(settings: WorkerSettings) -> Path:
    """Where this slot's jobs keep their temporary files (only its lock holder uses it): in
    ``jobs_root`` (``serve`` puts it in its data folder), else in $TMPDIR."""
    root = settings.jobs_root or Path(os.environ.get("TMPDIR") or "/tmp")
    return root / f"judge-jobs-{settings.slot_name}"


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
    """One grading's process (:mod:`runner.judge.jobrun`), in a session of its own and a
    private temporary folder, with its stdout read without blocking."""

    command = [sys.executable, "-s", "-m", "runner.judge.jobrun"]   # tests put a stand-in here

    def __init__(self, spec: Dict[str, Any], settings: WorkerSettings):
        # every temporary file of the job (the sandbox's too) goes here, removed after the job
        # even when the job process was SIGKILLed before cleaning up (and, after a crash of the
        # worker, by the next worker of this slot)
        folder = jobs_folder(settings)
        folder.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="job-", dir=folder))
        self.stopped = False
        # the job goes in through a file, not a pipe: no write can block on a child that
        # does not read
        with tempfile.TemporaryFile(dir=self.home) as spec_file:
            spec_file.write(json.dumps(spec).encode())
            spec_file.seek(0)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                self.proc = subprocess.Popen(list(self.command), stdin=spec_file, stdout=out_w,
                                             stderr=err_w, cwd=str(self.home),
                                             env=job_environment(settings, self.home),
                                             start_new_session=True)
            except BaseException:
                for fd in (out_r, err_r):
                    os.close(fd)
                raise
            finally:
                os.close(out_w)
                os.close(err_w)
        self.out = procs.LineReader(out_r, MAX_RESULT_BYTES)
        self.err = procs.TailReader(err_r)

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
             sweep_all: bool = False) -> List[int]:
        """Let it exit by itself for ``exit_grace_s`` s; then SIGTERM its process group (the
        job process then kills its sandbox and leaves), for ``term_grace_s`` s; then SIGKILL
        its whole tree, its groups and its session, for ``kill_wait_s`` s. Then kill what is
        left of it (``sweep_all``: every descendant of this worker, which is a subreaper).
        Returns the pids still not exited; a job process among them is reaped in the
        background. Never blocks longer than the three waits together."""
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
            if sweep_all:
                signalled |= procs.kill_tree(os.getpid(), include_root=False)
            left = procs.wait_gone(signalled - {self.pid}, kill_wait_s if signalled else 0)
            if self.proc.poll() is None:
                _UNREAPED[:] = [p for p in _UNREAPED if p.poll() is None] + [self.proc]
                procs.reap_later(self.proc)
                left = [self.pid] + left
            return left
        finally:
            self.out.close()
            self.err.close()
            shutil.rmtree(self.home, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner.judge.worker",
                                description="A judge worker bound to one GPU (or CPU slot). The "
                                            f"token comes from ${TOKEN_ENV}.")
    p.add_argument("--url", required=True, help="the judge's API, e.g. http://judge:8000")
    p.add_argument("--accelerator", required=True, help="the accelerator this worker serves")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", type=int, help="the GPU index this worker owns")
    where.add_argument("--cpu", metavar="SLOT", help="a CPU slot (no GPU: the CPU grading path)")
    p.add_argument("--name", default="", help="this worker's name in leases and logs")
    p.add_argument("--challenges", action="append", default=[], metavar="DIR",
                   help="a folder of challenges (as the API's `challenges`); repeatable")
    p.add_argument("--redis-url", default=os.environ.get("JUDGE_REDIS_URL"),
                   help="a fleet: read submission ids from Dramatiq on this Redis "
                        "(or $JUDGE_REDIS_URL)")
    p.add_argument("--namespace", default="judge")
    p.add_argument("--heartbeat-timeout-ms", type=int, default=60_000)
    p.add_argument("--maintenance-chance", type=int, default=1000)
    p.add_argument("--watchdog-margin", type=float, default=30.0)
    p.add_argument("--lock-dir", type=Path, default=None,
                   help=f"where this judge's slot lock files live (default ${LOCK_DIR_ENV}, "
                        f"$XDG_RUNTIME_DIR or /tmp; `serve` uses DATA_DIR/workers); a GPU's "
                        f"lock is also taken there, machine-wide")
    p.add_argument("--jobs-dir", type=Path, default=None,
                   help="where the slot's jobs keep their files (default: the --lock-dir when "
                        "given, else $TMPDIR or /tmp)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="stop when this process (the supervisor) is gone")
    p.add_argument("--allow-unsandboxed", action="store_true",
                   help="grade even where no bubblewrap jail can be made (trusted code only)")
    p.add_argument("--startup-allowance", type=float, default=STARTUP_ALLOWANCE_S,
                   help="seconds the watchdog adds for a job to start, before its first "
                        f"progress line (default {STARTUP_ALLOWANCE_S:g})")
    return p


def settings_from_args(args: argparse.Namespace) -> WorkerSettings:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"set ${TOKEN_ENV} to a token with the worker role "
                         f"(`python -m runner.judge.auth new-token NAME worker`)")
    s = WorkerSettings(url=args.url, token=token, accelerator=args.accelerator, gpu=args.gpu,
                       slot=args.cpu or "0", name=args.name, challenge_dirs=list(args.challenges),
                       watchdog_margin_s=args.watchdog_margin, redis_url=args.redis_url,
                       namespace=args.namespace, heartbeat_timeout_ms=args.heartbeat_timeout_ms,
                       maintenance_chance=args.maintenance_chance, parent_pid=args.parent_pid)
    if args.lock_dir:
        s.lock_dir = args.lock_dir
    s.jobs_root = args.jobs_dir or args.lock_dir
    s.sandbox = "auto" if args.allow_unsandboxed else "require"
    s.startup_allowance_s = args.startup_allowance
    if s.sandbox == "require":
        usable, why = jail.probe()
        if not usable:
            raise SystemExit(f"error: refusing to grade without a sandbox ({why}); install "
                             f"bubblewrap, or pass --allow-unsandboxed for trusted code only")
    return s


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = settings_from_args(build_parser().parse_args(argv))
    worker = Worker(settings)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    try:
        worker.run_forever()
    except SlotBusy as exc:
        # one line in serve's log, and the same reason in /healthz and in the stream of what
        # is queued for this accelerator
        log.error("worker %s cannot take its slot, so it is not started: %s",
                  settings.slot_name, exc)
        worker.say_unavailable(f"cannot take its slot: {exc}")
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
