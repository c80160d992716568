"""No lost submissions: a worker or the API killed with SIGKILL at each stage, and every
submission still reaches exactly one terminal status, with the right verdict."""

from __future__ import annotations

import os
import time

import pytest

from judge_helpers import message, terminal_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def _children(pid: int):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def assert_exactly_one_terminal(judge, sid, status="success", verdict="accepted"):
    terminal = judge.wait_terminal(sid, timeout=60)
    time.sleep(0.5)                       # a second terminal event would have shown by now
    events = judge.events(sid)
    assert len(terminal_events(events)) == 1, events
    assert terminal["status"] == status and terminal["output"]["verdict"] == verdict, terminal
    return judge.record(sid)


@pytest.mark.parametrize("stage", ["claimed", "result"])
def test_worker_killed_after_its_claim_or_holding_an_unstored_result(judge_factory, stage):
    judge = judge_factory()
    judge.start_api()
    doomed = judge.start_worker("doomed", crash_at=stage)
    sid = judge.submit(message())
    doomed.wait(timeout=60)                         # it killed itself at that stage
    assert doomed.returncode == -9
    judge.start_worker("healthy")
    record = assert_exactly_one_terminal(judge, sid)
    assert record["attempts"] == 2 and record["retries"] == 1
    # queued, taken back, queued again (besides any note that no worker was serving yet)
    queued = [e for e in judge.events(sid) if e["status"] == "queued"
              and not str(e["output"]).startswith("no worker")]
    assert len(queued) == 2, judge.events(sid)


@pytest.mark.parametrize("file, phase", [("slow_import.pytorch.py", "loading"),
                                         ("slow_solve.pytorch.py", "running example")])
def test_worker_killed_while_building_or_running(judge_factory, file, phase):
    judge = judge_factory()
    judge.start_api()
    worker = judge.start_worker("victim")
    sid = judge.submit(message(file))
    # the phase comes once the jailed child is up: start-up on a loaded machine takes a while
    judge.wait_for_event(sid, lambda e: str(e["output"]).startswith(phase), timeout=180)
    job_processes = _children(worker.pid)
    assert job_processes, "the worker should be running a job process"
    judge.kill_worker("victim")                     # SIGKILL to the worker alone
    for pid in job_processes:                       # its job process notices and ends itself
        assert _gone(pid, timeout=5), f"job process {pid} outlived its worker"
    judge.start_worker("rescuer")
    record = assert_exactly_one_terminal(judge, sid)
    assert record["attempts"] == 2


def test_api_killed_while_queued_and_while_running(judge_factory):
    judge = judge_factory(leases={"lease_s": 10.0, "heartbeat_s": 0.5})
    judge.start_api()
    queued = judge.submit(message())                # acknowledged: so it is on disk
    judge.kill_api()
    judge.start_api()
    worker = judge.start_worker("w")
    assert judge.wait_terminal(queued)["status"] == "success"
    running = judge.submit(message("slow_solve.pytorch.py", action="submit"))
    judge.wait_for_event(running, lambda e: str(e["output"]).startswith("running test"))
    judge.kill_api()                                # the worker keeps grading, heartbeats fail
    time.sleep(1.0)
    judge.start_api()
    record = assert_exactly_one_terminal(judge, running)
    assert record["attempts"] == 1                  # back before the lease ran out: no retry
    assert worker.poll() is None
    assert_exactly_one_terminal(judge, queued)


def test_the_remote_client_reconnects_and_resumes_across_an_api_restart(judge_factory):
    import threading

    from judge_helpers import CHALLENGE_CODE, SOLUTIONS, token
    from runner.judge.client import build_message, stream

    judge = judge_factory(leases={"lease_s": 10.0, "heartbeat_s": 0.5})
    judge.start_api()
    judge.start_worker("w")
    msg = build_message("submit", "solution.pytorch.py",
                        (SOLUTIONS / "slow_solve.pytorch.py").read_text(), "pytorch",
                        token("alice"), challenge_code=CHALLENGE_CODE, accelerator="cpu",
                        submission_id="restart-resume-01")
    got = []
    reader = threading.Thread(target=lambda: got.extend(stream(judge.url, msg, timeout_s=120)))
    reader.start()
    judge.wait_for_event("restart-resume-01", lambda e: str(e["output"]).startswith("running test"))
    judge.kill_api()                                # the client's socket drops mid-stream
    time.sleep(0.5)
    judge.start_api()
    reader.join(timeout=100)
    assert got and got[-1]["status"] == "success", got
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(len(seqs)))           # nothing missed, nothing twice
    assert len(terminal_events(judge.events("restart-resume-01"))) == 1


def test_repeated_infrastructure_faults_end_interrupted_after_two_retries(judge_factory):
    judge = judge_factory(leases={"lease_s": 1.0, "heartbeat_s": 0.25})
    judge.start_api()
    sid = judge.submit(message())
    for k in range(3):
        worker = judge.start_worker(f"crashy{k}", crash_at="claimed")
        worker.wait(timeout=60)
    terminal = judge.wait_terminal(sid, timeout=30)
    assert terminal["status"] == "interrupted"
    assert "send it again" in terminal["output"]["message"]
    record = judge.record(sid)
    assert record["attempts"] == 3 and record["retries"] == 3
    assert len(terminal_events(judge.events(sid))) == 1


def test_one_job_per_gpu_slot(judge_factory):
    judge = judge_factory()
    judge.start_api()
    judge.start_worker("same-slot")
    time.sleep(2.0)
    second = judge.start_worker("same-slot")
    assert second.wait(timeout=30) == 2
    log = (judge.logs / "worker-same-slot.log").read_text()
    assert "already held" in log and "one worker per slot" in log
