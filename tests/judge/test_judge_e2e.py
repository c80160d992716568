"""End to end: a real judge (uvicorn) with real CPU workers, driven by a client written the way
LeetGPU's public client is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge_helpers import (CHALLENGE_CODE, REPO, TERMINAL, Judge, leetgpu_client, message,
                      terminal_events, token, write_config)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judge-e2e")
    j = Judge(tmp, write_config(tmp / "judge.yaml", limits={"time_limit_s": 6}))
    j.start_api()
    j.start_worker("a")
    j.start_worker("b")
    yield j
    j.close()


def test_leetgpu_client_gets_progress_then_the_full_result(judge):
    log = leetgpu_client(judge.url, message("correct.pytorch.py", action="submit"))
    statuses = [m["status"] for m in log]
    assert statuses[0] == "queued" and "position" in log[0]["output"]
    assert "running" in statuses and statuses[-1] == "success"
    assert all(s not in TERMINAL for s in statuses[:-1])          # exactly one terminal message
    result = log[-1]["output"]
    assert result["verdict"] == "accepted" and result["action"] == "submit"
    assert result["challenge"] == "1_vector_add" and len(result["tests"]) == 4
    assert isinstance(result["seed"], int) and result["seed"] > 0  # a private per-submission seed
    assert [m["seq"] for m in log] == list(range(len(log)))       # numbered events, none skipped
    # an accepted submit is verified for the leaderboard by a second run; its final decision
    # follows the terminal event on the same stream (waited for here, so that the verification
    # does not compete with the next test's grading for the CPU)
    final = judge.wait_for_event(log[-1]["submissionId"], lambda e: e["status"] == "leaderboard"
                                 and e["output"].get("final"), timeout=120)
    assert final["output"]["state"] == "ranked" and final["seq"] > log[-1]["seq"]
    entry = final["output"]["entry"]          # two workers: the other one verified it
    assert entry["verifyWorker"] != entry["worker"] and entry["verifyVerdict"] == "accepted"


@pytest.mark.parametrize("file, status, verdict", [
    ("wrong.pytorch.py", "error", "wrong_answer"),
    ("nan_output.pytorch.py", "error", "wrong_answer"),     # non-finite numbers in the result
    ("syntax_error.pytorch.py", "error", "compile_error"),
    ("crash.pytorch.py", "error", "runtime_error"),
    ("hang.pytorch.py", "timeout", "time_limit_exceeded"),
])
def test_bad_submissions_get_their_verdict_once_and_are_never_retried(judge, file, status, verdict):
    log = leetgpu_client(judge.url, message(file))
    assert log[-1]["status"] == status, log[-1]
    assert log[-1]["output"]["verdict"] == verdict
    record = judge.record(log[-1]["submissionId"])
    assert record["attempts"] == 1 and record["retries"] == 0     # a user's fault is not retried
    assert len(terminal_events(judge.events(log[-1]["submissionId"]))) == 1
    if file == "nan_output.pytorch.py":
        worst = log[-1]["output"]["tests"][0]
        assert worst["passed"] is False and worst["max_abs_error"] is None, worst


def test_the_job_sees_no_gpu_and_no_worker_token(judge):
    log = leetgpu_client(judge.url, message("show_gpus.pytorch.py"))
    result = log[-1]["output"]
    assert result["verdict"] == "accepted"
    assert "CUDA_VISIBLE_DEVICES=''" in result["logs"]      # a CPU slot: no GPU visible at all
    assert "TOKEN_SEEN=False" in result["logs"]


def test_closing_the_socket_does_not_cancel_and_a_client_resumes(judge):
    import websocket

    msg = message("slow_solve.pytorch.py", submissionId="resume-test-0001")
    ws = websocket.create_connection(judge.url.replace("http", "ws") + "/api/v1/ws/submit",
                                     timeout=30)
    ws.send(json.dumps(msg))
    first = json.loads(ws.recv())
    ws.close()                                        # gone after the first event
    assert first["status"] == "queued" and first["submissionId"] == "resume-test-0001"
    # the same message again resumes after the last event seen: nothing new is created
    log = leetgpu_client(judge.url, {**msg, "after": first["seq"]})
    assert log[0]["seq"] == first["seq"] + 1
    assert log[-1]["status"] == "success"
    assert len(terminal_events(judge.events("resume-test-0001"))) == 1
    # replaying from the start over HTTP gives every event, numbered
    events = judge.events("resume-test-0001")
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_http_submit_fetch_and_listing(judge):
    sid = judge.submit(message())
    terminal = judge.wait_terminal(sid)
    assert terminal["status"] == "success"
    record = judge.record(sid)
    assert record["state"] == "done" and record["result"]["verdict"] == "accepted"
    with judge.http("alice") as c:
        mine = c.get("/api/v1/submissions").json()["submissions"]
        assert sid in [s["submissionId"] for s in mine]
        assert c.get("/api/v1/challenges").json()["challenges"][0]["id"] == "1_vector_add"
        assert c.get("/api/v1/accelerators").json()["accelerators"][0]["name"] == "cpu"
    with judge.http("bob") as c:                       # a user sees only their own
        assert c.get(f"/api/v1/submissions/{sid}").status_code == 404
        assert c.get(f"/api/v1/submissions/{sid}/events").status_code == 404
        assert sid not in [s["submissionId"] for s in c.get("/api/v1/submissions").json()["submissions"]]
    with judge.http("root") as c:                      # an admin sees every one
        assert c.get(f"/api/v1/submissions/{sid}").status_code == 200


def test_metrics_report_queue_depth_grading_time_and_outcomes(judge):
    leetgpu_client(judge.url, message())
    with judge.http(None) as c:
        text = c.get("/metrics").text
    assert 'judge_queue_depth{accelerator="cpu"}' in text
    assert "judge_grading_seconds_count" in text
    assert 'judge_outcomes_total{accelerator="cpu",status="success",verdict="accepted"}' in text


def test_remote_cli_prints_the_same_report_as_a_local_run(judge, tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "JUDGE_TOKEN": token("alice"), "HOME": str(tmp_path)}
    folder = REPO / "tests" / "judge" / "challenges" / "easy" / "1_vector_add"
    solution = REPO / "tests" / "judge" / "solutions" / "wrong.pytorch.py"
    run = subprocess.run([sys.executable, str(REPO / "run_challenge.py"), str(folder),
                          "--solution", str(solution), "--remote", judge.url, "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)
    assert result["verdict"] == "wrong_answer" and result["status"] == "error"
    assert "[queued]" in run.stderr and "[running]" in run.stderr
    text = subprocess.run([sys.executable, str(REPO / "run_challenge.py"), str(folder),
                           "--solution", str(REPO / "tests/judge/solutions/correct.pytorch.py"),
                           "--remote", judge.url], env=env, capture_output=True, text=True,
                          timeout=120)
    assert text.returncode == 0, text.stderr
    assert "Verdict: ACCEPTED" in text.stdout


def test_the_challenge_code_is_matched_line_endings_aside(judge):
    crlf = CHALLENGE_CODE.replace("\n", "\r\n")
    log = leetgpu_client(judge.url, message(submission={"challengeCode": crlf}))
    assert log[-1]["output"]["challenge"] == "1_vector_add"


def test_a_remote_compile_error_names_the_users_file_not_the_workers_copy(judge, tmp_path):
    import shutil
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "JUDGE_TOKEN": token("alice"), "HOME": str(tmp_path)}
    folder = REPO / "tests" / "judge" / "challenges" / "easy" / "1_vector_add"
    mine = Path(shutil.copy(REPO / "tests" / "judge" / "solutions" / "syntax_error.pytorch.py",
                            tmp_path / "my_attempt.pytorch.py"))
    run = subprocess.run([sys.executable, str(REPO / "run_challenge.py"), str(folder),
                          "--solution", str(mine), "--remote", judge.url, "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)
    assert result["verdict"] == "compile_error", result
    shown = result["message"] + result["details"]
    assert str(mine) in shown, shown
    assert "solution.pytorch.py" not in shown.replace(str(mine), ""), shown
