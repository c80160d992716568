"""A worker's settings and its command line (``python -m runner.judge.worker``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from runner import environment
from runner.policy import (HEARTBEAT_TIMEOUT_MS, KILL_WAIT_S, MAINTENANCE_CHANCE, QUEUE_NAMESPACE,
                           STARTUP_ALLOWANCE_S, WATCHDOG_MARGIN_S)
from runner.sandbox import jail



def machine_lock_dir() -> Path:
    """Where locks shared by every judge on this machine live (a GPU's)."""
    return environment.lock_dir()


@dataclass
class WorkerSettings:
    url: str
    token: str
    accelerator: str
    gpu: Optional[int] = None          # None: a CPU slot
    slot: str = "0"
    name: str = ""
    challenge_dirs: List[str] = field(default_factory=list)
    watchdog_margin_s: float = WATCHDOG_MARGIN_S
    claim_wait_s: float = 10.0
    lock_dir: Path = field(default_factory=lambda: machine_lock_dir())
    jobs_root: Optional[Path] = None   # the slot's jobs folder goes here (default $TMPDIR)
    parent_pid: Optional[int] = None   # started by a supervisor: stop when it is gone
    sandbox: str = "require"           # "auto" (--allow-unsandboxed): grade even without a jail
    startup_allowance_s: float = STARTUP_ALLOWANCE_S
    redis_url: Optional[str] = None    # a fleet: take submission ids from Dramatiq
    namespace: str = QUEUE_NAMESPACE
    heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS
    maintenance_chance: int = MAINTENANCE_CHANCE
    result_retry_s: float = 120.0      # keep offering a result this long while the API is down
    term_grace_s: float = 3.0          # a job process being stopped: SIGTERM, then this long
    kill_wait_s: float = KILL_WAIT_S   # after SIGKILL, wait this long for it to be reaped
    stuck_grace_s: float = 30.0        # past every bound by this much: the worker gives up
    prewarm: bool = False              # park the next job process and its jail ahead
    #                                    (worker/prewarm.py; the command line's default)
    prewarm_overlap: bool = True       # park the next one's CPU start while a job runs
    time_budget_s: Optional[float] = None   # the timed runs' budget (None: GradeOptions')

    @property
    def slot_name(self) -> str:
        return f"gpu{self.gpu}" if self.gpu is not None else f"cpu{self.slot}"

    @property
    def device(self) -> str:
        return "cuda" if self.gpu is not None else "cpu"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner.judge.worker",
                                description="A judge worker bound to one GPU (or CPU slot). The "
                                            "token comes from $JUDGE_WORKER_TOKEN.")
    p.add_argument("--url", required=True, help="the judge's API, e.g. http://judge:8000")
    p.add_argument("--accelerator", required=True, help="the accelerator this worker serves")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", type=int, help="the GPU index this worker owns")
    where.add_argument("--cpu", metavar="SLOT", help="a CPU slot (no GPU: the CPU grading path)")
    p.add_argument("--name", default="", help="this worker's name in leases and logs")
    p.add_argument("--challenges", action="append", default=[], metavar="DIR",
                   help="a folder of challenges (as the API's `challenges`); repeatable")
    p.add_argument("--redis-url", default=environment.redis_url(),
                   help="a fleet: read submission ids from Dramatiq on this Redis "
                        "(or $JUDGE_REDIS_URL)")
    p.add_argument("--namespace", default=QUEUE_NAMESPACE)
    p.add_argument("--heartbeat-timeout-ms", type=int, default=HEARTBEAT_TIMEOUT_MS)
    p.add_argument("--maintenance-chance", type=int, default=MAINTENANCE_CHANCE)
    p.add_argument("--watchdog-margin", type=float, default=WATCHDOG_MARGIN_S)
    p.add_argument("--lock-dir", type=Path, default=None,
                   help="where this judge's slot lock files live (default $JUDGE_LOCK_DIR, "
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
    p.add_argument("--time-budget", type=float,
                   default=environment.worker_time_budget(),
                   help="seconds the timed runs of a submission (and of the reference) may "
                        "take at most; they stop sooner once the mean is known within 1%% "
                        "(default: the grader's, 3; $JUDGE_WORKER_TIME_BUDGET)")
    p.add_argument("--prewarm-idle-only", action="store_true",
                   help="park the next job process only once the current job is done (not "
                        "its CPU start beside the current grading)")
    p.add_argument("--no-prewarm", action="store_true",
                   help="start each job's process and jail when the job comes, instead of "
                        "parking the next ones while idle")
    return p


def settings_from_args(args: argparse.Namespace) -> WorkerSettings:
    token = environment.worker_token()
    if not token:
        raise SystemExit("set $JUDGE_WORKER_TOKEN to a token with the worker role "
                         "(`python -m runner.judge.server.auth new-token NAME worker`)")
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
    s.time_budget_s = args.time_budget
    s.prewarm_overlap = not (args.prewarm_idle_only or environment.prewarm_idle_only())
    s.prewarm = not args.no_prewarm and not environment.no_prewarm()
    if s.sandbox == "require":
        why = jail.isolation_refusal()
        if why:
            raise SystemExit(f"error: refusing to grade untrusted code: {why}; install "
                             f"bubblewrap and run where cgroups are writable, or pass "
                             f"--allow-unsandboxed for trusted code only")
    return s
