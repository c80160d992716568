"""A worker: one process bound to one GPU (or one CPU slot), grading one submission at a time.

It talks only to the judge's API (HTTP, with a token that has the worker role; it holds no
database credentials), and in a fleet also reads submission ids from its accelerator's
Dramatiq queue. For each job it: leases the submission, starts :mod:`runner.judge.worker.jobrun`
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

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import httpx

from runner import environment, procs
from runner.exit_codes import EXIT_OK, EXIT_STUCK, EXIT_USAGE
from runner.judge.wire import status_of_progress
from runner.judge.worker.api_client import Api, LeaseLost
from runner.judge.worker.broker_feed import BrokerFeed
from runner.judge.worker.job_process import UNREAPED, JobProcess, remove_stale_jobs
from runner.judge.worker.prewarm import Prewarm
from runner.judge.worker.settings import WorkerSettings, build_parser, settings_from_args
from runner.judge.worker.slots import SlotBusy, hold_slot

log = logging.getLogger("runner.judge.worker")
PRESENCE_EVERY_S = 5.0                  # how often a worker tells the API it is serving
MAX_EVENTS_PER_READ = 5                 # more progress lines at once: only the latest is posted


def crash_point(name: str) -> None:
    """Die here with SIGKILL when ``$JUDGE_WORKER_CRASH_AT`` names this point (tests use it to
    kill a worker at an exact stage: after its claim, or holding a result not yet stored)."""
    if environment.crash_point() == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
        # the next job process, started while idle (settings.prewarm: serve's workers)
        self.prewarm = Prewarm(settings) if settings.prewarm else None
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
        if self.prewarm is not None:
            self.prewarm.ensure()
            self.prewarm.gpu_free()
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
            if self.prewarm is not None:
                self.prewarm.discard()
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
            if self.prewarm is not None and not self.stop.is_set():
                self.prewarm.ensure()       # (already parked while this job ran, usually)
                self.prewarm.gpu_free()     # this job is gone: the next may take the GPU

    def _stop_bound(self) -> float:
        """The longest :meth:`_stop_job` can take."""
        return 2 * self.settings.term_grace_s + 2 * self.settings.kill_wait_s

    def _stop_job(self, job: "JobProcess", wait_for_exit: bool = False) -> None:
        """Stop the job process (if still running) and everything it started, with bounded
        waits; at most once per job."""
        if job.stopped:
            return
        grace = self.settings.term_grace_s if wait_for_exit else 0.0
        spare = self.prewarm.pids() if self.prewarm is not None else []
        left = job.stop(exit_grace_s=grace, term_grace_s=self.settings.term_grace_s,
                        kill_wait_s=self.settings.kill_wait_s, sweep_all=self._subreaper,
                        spare=spare)
        if left:
            log.warning("%d process(es) of the last job had not exited %g s after SIGKILL (a GPU "
                        "context still being torn down?): %s; taking the next job anyway",
                        len(left), self.settings.kill_wait_s, left)
        if self._subreaper:
            procs.reap_zombie_children(skip=[p.pid for p in UNREAPED if p.poll() is None]
                                       + spare)

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
                "sandbox": self.settings.sandbox, "timeBudgetSeconds": self.settings.time_budget_s}
        limit = float(claim["timeLimitSeconds"])
        # the time limit counts from the moment the submission's side is up (its first
        # progress line); until then, starting it (and the reference's plan) gets its own allowance
        margin = self.settings.watchdog_margin_s
        deadline = time.monotonic() + limit + margin + self.settings.startup_allowance_s
        started = False
        job = self.prewarm.take(spec) if self.prewarm is not None else None
        if job is None:
            job = JobProcess(spec, self.settings)
        self._current_job = job
        if self.prewarm is not None and self.settings.prewarm_overlap:
            self.prewarm.ensure()      # the next one's CPU start, beside this grading
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


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = settings_from_args(build_parser().parse_args(argv))
    worker = Worker(settings)
    # SIGTERM (serve stopping it) and Ctrl-C (which a terminal sends to serve's whole process
    # group): finish or give back the job in hand, then exit quietly
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    try:
        worker.run_forever()
    except SlotBusy as exc:
        # one line in serve's log, and the same reason in /healthz and in the stream of what
        # is queued for this accelerator
        log.error("worker %s cannot take its slot, so it is not started: %s",
                  settings.slot_name, exc)
        worker.say_unavailable(f"cannot take its slot: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return EXIT_OK

