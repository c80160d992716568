"""The worker's side of a stuck job, in-process and fast: a stand-in job process that writes
its result and then never exits (SIGTERM ignored, blocked in native code), one that writes
nothing, one that is not reaped even after SIGKILL (as while the GPU driver tears a context
down), and a job thread that is stuck itself. The result is stored without waiting for the
process to exit, every wait is bounded, and the process tree is gone afterwards."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Dict, List

import pytest

from runner import procs
from runner.judge.worker import job_process
from runner.judge.worker.job_process import JobProcess
from runner.judge.worker.loop import Worker
from runner.judge.worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(120)

# writes a result (or not), ignores SIGTERM and SIGINT, and blocks in pause() for good
STAND_IN = r'''
import ctypes, json, os, signal, sys
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
if sys.argv[1] == "result":
    print(json.dumps({"progress": "running test 1 (1 of 1)"}), flush=True)
    print(json.dumps({"result": {"verdict": "accepted", "message": "ok"}}), flush=True)
ctypes.CDLL(None).pause()
'''


class FakeApi:
    def __init__(self):
        self.calls: List[tuple] = []
        self.completed = threading.Event()
        self.completed_at = 0.0

    def heartbeat(self, sid, lease):
        self.calls.append(("heartbeat",))

    def event(self, sid, lease, status, output):
        self.calls.append(("event", status, output))

    def complete(self, sid, lease, result):
        self.calls.append(("complete", result))
        self.completed_at = time.monotonic()
        self.completed.set()
        return "stored"

    def release(self, sid, lease, reason):
        self.calls.append(("release", reason))

    def close(self):
        pass


@pytest.fixture(autouse=True)
def own_jobs_folder(tmp_path, monkeypatch):
    """The workers' jobs folders ($TMPDIR/judge-jobs-<slot>) in this test's own folder."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def make_worker(**settings: Any) -> Worker:
    s = WorkerSettings(url="http://127.0.0.1:1", token="t" * 30, accelerator="cpu", slot="stops",
                       term_grace_s=0.5, kill_wait_s=1.0, watchdog_margin_s=0.5, **settings)
    w = Worker(s)
    w.api = FakeApi()
    # the real last resort exits the process: here it would take pytest down with it
    w.abandoned = []
    w._abandon = lambda sid, lease: w.abandoned.append(sid)
    return w


def claim(limit: float = 30.0) -> Dict[str, Any]:
    return {"submissionId": "s1", "lease": "l1", "heartbeatSeconds": 0.1,
            "timeLimitSeconds": limit, "hostMemoryBytes": 2**30,
            "job": {"challenge": "1_vector_add", "language": "pytorch", "action": "run",
                    "seed": 7}}


@pytest.fixture
def stand_in(monkeypatch):
    def use(mode: str) -> None:
        monkeypatch.setattr(JobProcess, "command", [sys.executable, "-c", STAND_IN, mode])
    return use



def test_the_result_is_stored_before_the_job_process_exits_and_it_is_then_killed(stand_in):
    stand_in("result")
    w = make_worker()
    seen: List[int] = []
    real_run = w._run_job

    def run_and_note(c, lost):
        verdict, job = real_run(c, lost)
        seen.append(job.pid)
        return verdict, job

    w._run_job = run_and_note
    started = time.monotonic()
    w.grade(claim())
    took = time.monotonic() - started
    results = [c[1] for c in w.api.calls if c[0] == "complete"]
    assert results == [{"verdict": "accepted", "message": "ok"}]
    assert ("event", "running", "running test 1 (1 of 1)") in w.api.calls
    # stored within a second or two of the job's start, although the process never exits
    assert w.api.completed_at - started < 10, w.api.completed_at - started
    # then: exit grace 0.5 s, SIGTERM (ignored) 0.5 s, SIGKILL: bounded
    assert took < 10 + w._stop_bound(), took
    assert seen and not procs.is_alive(seen[0])
    assert not w.abandoned


def test_the_watchdog_stops_a_job_that_writes_nothing_and_ignores_sigterm(stand_in):
    stand_in("silent")
    w = make_worker(startup_allowance_s=0.5)
    started = time.monotonic()
    w.grade(claim(limit=0.5))
    took = time.monotonic() - started
    results = [c[1] for c in w.api.calls if c[0] == "complete"]
    assert len(results) == 1 and results[0]["verdict"] == "time_limit_exceeded", w.api.calls
    assert "stopped by the worker's watchdog" in results[0]["message"]
    assert took < 0.5 + 0.5 + 0.5 + w._stop_bound() + 5, took
    assert not w.abandoned


def test_a_silent_start_within_the_start_up_allowance_is_not_abandoned(stand_in):
    """The job's watchdog allows its start-up on top of the time limit; the heartbeat
    thread's last resort must allow at least as much, or a slow start kills the worker."""
    stand_in("silent")
    w = make_worker(startup_allowance_s=6.0, stuck_grace_s=0.5)
    w.grade(claim(limit=0.2))
    results = [c[1] for c in w.api.calls if c[0] == "complete"]
    assert [r["verdict"] for r in results] == ["time_limit_exceeded"]
    assert not w.abandoned


def test_a_job_process_not_reaped_after_sigkill_does_not_hold_the_worker(stand_in, held_sigkills):
    """SIGKILL held back (as when the driver takes long to tear a GPU context down): the
    worker gives up waiting after kill_wait_s and reaps the process in the background."""
    stand_in("result")
    w = make_worker()
    started = time.monotonic()
    w.grade(claim())
    took = time.monotonic() - started
    held = list(held_sigkills)
    held_sigkills.release()
    assert [c[1]["verdict"] for c in w.api.calls if c[0] == "complete"] == ["accepted"]
    assert took < 10 + w._stop_bound(), took
    assert held
    stuck = [p for p in job_process.UNREAPED]
    assert stuck, "the unreaped job process is not being reaped in the background"
    deadline = time.monotonic() + 10
    while any(p.poll() is None for p in stuck) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(p.poll() is not None for p in stuck)


def test_a_stuck_job_thread_gives_the_submission_back(monkeypatch):
    """The last resort: the job thread never returns; the heartbeat thread notices once every
    bound is past and abandons the worker (in production: release and exit)."""
    w = make_worker(stuck_grace_s=0.5, startup_allowance_s=0.5)
    abandoned = threading.Event()
    unblock = threading.Event()

    def stuck(c, lost):
        unblock.wait(60)
        raise RuntimeError("unblocked")

    def abandon(sid, lease):
        abandoned.set()
        unblock.set()

    released = []
    w._run_job = stuck
    w._abandon = abandon
    w.api.release = lambda sid, lease, reason: released.append(reason)
    started = time.monotonic()
    w.grade(claim(limit=0.2))      # the job thread's error is ours: logged, the job handed back
    assert abandoned.is_set()
    assert released == ["the worker failed (an internal error)"]
    bound = 0.2 + 0.5 + 0.5 + w._stop_bound() + 0.5
    assert bound - 1 < time.monotonic() - started < bound + 10


def test_a_misplaced_setting_in_the_config_is_refused_not_ignored():
    """The GPU demo once put watchdog_margin_s under limits: it was ignored silently."""
    from runner.judge.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="limits: unknown keys watchdog_margin_s"):
        parse_config({"limits": {"time_limit_s": 25, "watchdog_margin_s": 10}})
    config = parse_config({"limits": {"time_limit_s": 25}, "leases": {"watchdog_margin_s": 10}})
    assert config.leases.watchdog_margin_s == 10 and config.limits.time_limit_s == 25


def test_a_new_worker_removes_what_a_killed_one_left_in_its_slots_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    s = WorkerSettings(url="http://127.0.0.1:1", token="t" * 30, accelerator="cpu", slot="x")
    other = WorkerSettings(url="http://127.0.0.1:1", token="t" * 30, accelerator="cpu", slot="x-y")
    stale = job_process.jobs_folder(s) / "job-dead"
    (stale / "grading-1").mkdir(parents=True)
    kept = job_process.jobs_folder(other) / "job-live"
    kept.mkdir(parents=True)
    job_process.remove_stale_jobs(s)
    assert not stale.exists() and kept.exists()
