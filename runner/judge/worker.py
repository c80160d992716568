"""A worker: one process bound to one GPU (or one CPU slot), grading one submission at a time.

It talks only to the judge's API (HTTP, with a token that has the worker role; it holds no
database credentials), and in a fleet also reads submission ids from its accelerator's
Dramatiq queue. For each job it: leases the submission, starts :mod:`runner.judge.jobrun`
with only its GPU visible, renews the lease every ``heartbeatSeconds`` while the job runs,
forwards progress as events, and stores the result. Faults of its own (the job process dies
without a result) are reported with ``release``, which retries the submission elsewhere;
a lease taken back (``409`` on a heartbeat) stops the job at once.

``python -m runner.judge.worker --url URL --accelerator NAME (--gpu N | --cpu SLOT)`` with the
token in ``$JUDGE_WORKER_TOKEN``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx

from runner.isolation import ENV_PASSTHROUGH, RUNNER_ROOT
from runner.judge.jobrun import kill_descendants
from runner.judge.protocol import status_of_progress

log = logging.getLogger("runner.judge.worker")
TOKEN_ENV = "JUDGE_WORKER_TOKEN"
LOCK_DIR_ENV = "JUDGE_LOCK_DIR"         # where the one-worker-per-GPU lock files live
CRASH_ENV = "JUDGE_WORKER_CRASH_AT"     # for fault-injection tests: "claimed" or "result"


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
    lock_dir: Path = field(default_factory=lambda: Path(
        os.environ.get(LOCK_DIR_ENV) or os.environ.get("XDG_RUNTIME_DIR") or "/tmp"))
    parent_pid: Optional[int] = None   # started by a supervisor: stop when it is gone
    redis_url: Optional[str] = None    # a fleet: take submission ids from Dramatiq
    namespace: str = "judge"
    heartbeat_timeout_ms: int = 60_000
    maintenance_chance: int = 1000
    result_retry_s: float = 120.0      # keep offering a result this long while the API is down

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


def hold_slot(settings: WorkerSettings):
    """An exclusive lock on this worker's GPU (or CPU slot) for its lifetime."""
    settings.lock_dir.mkdir(parents=True, exist_ok=True)
    path = settings.lock_dir / f"judge-{settings.slot_name}.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SlotBusy(f"{settings.slot_name} is already held by {holder} ({path}): one worker "
                       f"per GPU; stop the other worker or pick another --gpu/--cpu slot")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


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
                                                         "output": output})
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
        if settings.redis_url:
            from runner.judge.queues import BrokerFeed
            self.feed = BrokerFeed(settings.redis_url, settings.accelerator, settings.namespace,
                                   settings.heartbeat_timeout_ms, settings.maintenance_chance)

    # -- the loop -------------------------------------------------------------------------------
    def _watch_parent(self) -> None:
        while not self.stop.wait(1.0):
            if os.getppid() != self.settings.parent_pid:
                log.warning("the supervisor (pid %s) is gone; stopping", self.settings.parent_pid)
                self.stop.set()

    def run_forever(self) -> None:
        lock = hold_slot(self.settings)
        if self.settings.parent_pid is not None:
            threading.Thread(target=self._watch_parent, daemon=True).start()
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
        beat = threading.Thread(target=self._heartbeats,
                                args=(sid, lease, float(claim["heartbeatSeconds"]), lost, done),
                                daemon=True)
        beat.start()
        try:
            verdict = self._run_job(claim, lost)
        finally:
            done.set()
            beat.join(timeout=5)
        if verdict["kind"] == "lost":
            log.info("%s: lease taken back; dropped", sid)
        elif verdict["kind"] == "fault":
            log.warning("%s: %s; releasing it for a retry", sid, verdict["reason"])
            self._quietly(self.api.release, sid, lease, verdict["reason"])
        else:
            crash_point("result")
            self._deliver(sid, lease, verdict["result"])

    def _heartbeats(self, sid: str, lease: str, interval: float, lost: threading.Event,
                    done: threading.Event) -> None:
        while not done.wait(interval):
            try:
                self.api.heartbeat(sid, lease)
            except LeaseLost:
                lost.set()
                return
            except (httpx.HTTPError, OSError) as exc:
                log.warning("%s: heartbeat failed (%s); grading goes on", sid, exc)
            if self.feed is not None:
                self._quietly(self.feed.heartbeat)

    def _quietly(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - best effort; the reaper covers the rest
            log.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)

    def _run_job(self, claim: Dict[str, Any], lost: threading.Event) -> Dict[str, Any]:
        sid, lease = claim["submissionId"], claim["lease"]
        spec = {"job": claim["job"], "device": self.settings.device,
                "timeLimitSeconds": claim["timeLimitSeconds"],
                "hostMemoryBytes": claim["hostMemoryBytes"],
                "challengeDirs": self.settings.challenge_dirs}
        home = Path(os.environ.get("TMPDIR") or "/tmp")
        proc = subprocess.Popen([sys.executable, "-s", "-m", "runner.judge.jobrun"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=str(home), env=job_environment(self.settings, home),
                                start_new_session=True)
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        stderr_tail: List[bytes] = []
        threading.Thread(target=_drain, args=(proc.stderr, stderr_tail), daemon=True).start()
        lines: "list[Optional[bytes]]" = []
        cond = threading.Condition()
        threading.Thread(target=_lines, args=(proc.stdout, lines, cond), daemon=True).start()
        deadline = time.monotonic() + float(claim["timeLimitSeconds"]) + self.settings.watchdog_margin_s
        result = None
        try:
            while True:
                with cond:
                    cond.wait_for(lambda: lines, timeout=0.2)
                    batch, lines[:] = list(lines), []
                for raw in batch:
                    if raw is None:
                        proc.wait()
                        if result is not None:
                            return {"kind": "result", "result": result}
                        tail = b"".join(stderr_tail).decode("utf-8", "replace")[-2000:]
                        return {"kind": "fault", "reason": f"the grading process ended with code "
                                f"{proc.returncode} and no result: {tail.strip()[-500:]}"}
                    msg = json.loads(raw)
                    if "result" in msg:
                        result = msg["result"]
                    elif "progress" in msg:
                        line = str(msg["progress"])[:300]
                        try:
                            self.api.event(sid, lease, status_of_progress(line), line)
                        except LeaseLost:
                            lost.set()
                        except (httpx.HTTPError, OSError):
                            pass      # progress is best effort; the result is not
                if lost.is_set():
                    return {"kind": "lost"}
                if time.monotonic() > deadline:
                    limit = float(claim["timeLimitSeconds"])
                    return {"kind": "result", "result": {
                        "verdict": "time_limit_exceeded",
                        "message": f"grading did not finish within the limit of {limit:g} s "
                                   f"(stopped by the worker's watchdog)",
                        "challenge": claim["job"]["challenge"],
                        "language": claim["job"]["language"], "action": claim["job"]["action"],
                        "seed": claim["job"]["seed"]}}
                if self.stop.is_set():
                    return {"kind": "fault", "reason": "the worker was stopped"}
        finally:
            if proc.poll() is None:
                kill_descendants(proc.pid)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()

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


def _drain(stream, tail: List[bytes]) -> None:
    for chunk in iter(lambda: stream.read(4096), b""):
        tail.append(chunk)
        while sum(map(len, tail)) > 16384:
            tail.pop(0)


def _lines(stream, lines: list, cond: threading.Condition) -> None:
    for raw in iter(stream.readline, b""):
        with cond:
            lines.append(raw)
            cond.notify()
    with cond:
        lines.append(None)
        cond.notify()


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
                   help=f"where the per-GPU lock files live (default ${LOCK_DIR_ENV}, "
                        f"$XDG_RUNTIME_DIR or /tmp)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="stop when this process (the supervisor) is gone")
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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
