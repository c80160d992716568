"""Submissions stuck in native code, through the judge (embedded SQLite, one CPU worker, the
LeetGPU-style WebSocket client): each reaches its terminal status within the time limit plus a
bounded margin, exactly once and without a retry, nothing it started outlives the job, and a
correct submission right after is accepted by the same worker. Also the trusted side stuck (an
author's challenge code blocked in native code with SIGTERM ignored): the worker's watchdog
stops the job process, escalating SIGTERM to SIGKILL, and stays healthy."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from judge_helpers import (CHALLENGE_CODE, Judge, leetgpu_client, message, terminal_events,
                           write_config)
from runner import procs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

_spec = importlib.util.spec_from_file_location(
    "native_hangs", Path(__file__).resolve().parent.parent / "native_hangs.py")
native_hangs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native_hangs)

LIMIT_S = 3.0
STARTUP_S = 15.0                 # the worker's watchdog allowance before a job's first progress
WATCHDOG_MARGIN_S = 5.0          # judge_helpers starts workers with --watchdog-margin 5
SLACK_S = 25.0                   # generous: this machine may be loaded; the bound is what counts
PARAMS = ["A", "B", "C", "N"]


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judge-native")
    # these submissions report their processes' pids through files in the test's folder, which
    # a jail cannot write: the worker grades them unjailed, to test its own process-tree
    # machinery (tests/judge/test_escape.py covers the jail, whose PID namespace kills all)
    j = Judge(tmp, write_config(tmp / "judge.yaml", limits={"time_limit_s": LIMIT_S},
                                leases={"watchdog_margin_s": WATCHDOG_MARGIN_S}),
              # no parked job process: the test counts every process the worker has left
              # (tests/judge/test_judge_prewarm.py covers the parked one's life)
              env={"GRADER_BWRAP": "/nonexistent", "JUDGE_WORKER_NO_PREWARM": "1"})
    j.start_api()
    j.start_worker("n1", extra=["--allow-unsandboxed", "--startup-allowance", str(STARTUP_S)])
    yield j
    j.close()


def submit_source(judge: Judge, source: str, who: str = "alice", **submission):
    msg = message(who=who, submission={"files": [{"name": "solution.pytorch.py",
                                                  "content": source}], **submission})
    started = time.monotonic()
    log = leetgpu_client(judge.url, msg, timeout=120)
    return log, time.monotonic() - started


def assert_worker_healthy(judge: Judge) -> None:
    """A correct submission right after is accepted, and the worker has no process left over."""
    log = leetgpu_client(judge.url, message("correct.pytorch.py"), timeout=120)
    assert log[-1]["status"] == "success", (log[-1], judge.dump_logs())
    assert log[-1]["output"]["verdict"] == "accepted"
    worker = judge.workers["n1"]
    assert worker.poll() is None, judge.dump_logs()
    jobs = judge.tmp / "locks" / "judge-jobs-cpun1"      # the worker's --lock-dir holds it
    # the worker stores a result first and then stops its job process and removes its folder
    deadline = time.monotonic() + 30
    while ((procs.descendants(worker.pid) or list(jobs.glob("*")))
           and time.monotonic() < deadline):
        time.sleep(0.1)
    table = procs.process_table()
    left = [p for p in procs.descendants(worker.pid, table) if table[p].state != "Z"]
    assert not left, f"processes left by the worker's jobs: {left}"
    assert not list(jobs.glob("*")), f"files left by the worker's jobs: {list(jobs.glob('*'))}"


def assert_one_verdict(judge: Judge, log, status: str, verdict: str, text: str,
                       who: str = "alice") -> None:
    assert log[-1]["status"] == status, (log[-1], judge.dump_logs())
    result = log[-1]["output"]
    assert result["verdict"] == verdict, (result, judge.dump_logs())
    assert text in result["message"], result["message"]
    sid = log[-1]["submissionId"]
    record = judge.record(sid, who)
    assert record["attempts"] == 1 and record["retries"] == 0, record
    assert len(terminal_events(judge.events(sid, who))) == 1


@pytest.mark.parametrize("kind", ["pause", "gil_spin", "ignores_signals", "escapee"])
def test_a_native_hang_ends_timeout_within_the_limit_and_the_worker_stays_healthy(
        judge, tmp_path, kind):
    so = None
    if kind == "gil_spin":
        so = native_hangs.build_spin_library(tmp_path)
        if so is None:
            pytest.skip("no C compiler here to build the spinning library")
    log, seconds = submit_source(judge, native_hangs.solution(kind, PARAMS, tmp_path, so))
    assert_one_verdict(judge, log, "timeout", "time_limit_exceeded",
                       f"within the limit of {LIMIT_S:g} s")
    assert seconds < LIMIT_S + WATCHDOG_MARGIN_S + SLACK_S, seconds
    if kind == "escapee":
        native_hangs.assert_gone(native_hangs.escapee_pid(tmp_path, kind))
    assert_worker_healthy(judge)


def test_a_grandchild_left_by_a_process_that_exited_is_killed_with_the_job(judge, tmp_path):
    log, seconds = submit_source(judge, native_hangs.solution("escapee_exit", PARAMS, tmp_path))
    assert_one_verdict(judge, log, "error", "runtime_error", "exited with code 0")
    assert seconds < LIMIT_S + WATCHDOG_MARGIN_S + SLACK_S, seconds
    # the job process is a subreaper: the orphan was re-parented to it and killed
    native_hangs.assert_gone(native_hangs.escapee_pid(tmp_path, "escapee_exit"))
    assert_worker_healthy(judge)


STUCK_REFERENCE = CHALLENGE_CODE.replace(
    "        C.copy_(A + B)",
    "        import signal\n"
    "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "        signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "        ctypes.CDLL(None).pause()\n"
    "        C.copy_(A + B)")


def test_a_job_process_stuck_in_native_code_is_stopped_by_the_watchdog(judge):
    assert STUCK_REFERENCE != CHALLENGE_CODE
    log, seconds = submit_source(judge, (Path(__file__).parent / "solutions" /
                                         "correct.pytorch.py").read_text(),
                                 who="carol", challengeCode=STUCK_REFERENCE)
    assert_one_verdict(judge, log, "timeout", "time_limit_exceeded",
                       "stopped by the worker's watchdog", who="carol")
    # stuck before its first progress line, the watchdog fires at limit + margin + the start-up
    # allowance; SIGTERM is ignored, so SIGKILL follows 3 s later
    assert seconds < LIMIT_S + WATCHDOG_MARGIN_S + STARTUP_S + 3 + SLACK_S, seconds
    assert_worker_healthy(judge)
