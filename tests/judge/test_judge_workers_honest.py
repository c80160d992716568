"""A judge is honest about its workers: /healthz counts the live ones per accelerator and is not
ok while a queue has none; a worker that cannot take its slot says why in one line of serve's
log; what is queued where no worker can take it hears why in its stream; two judges on one
machine (two data folders) never collide over lock or job files."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from judge_helpers import REPO, free_port

pytestmark = pytest.mark.timeout(600)
CODE_96 = (REPO / "challenges/medium/96_int8_kv_cache_attention/challenge.py").read_text()
SOLUTION_96 = (REPO / "challenges/medium/96_int8_kv_cache_attention/reference"
               / "solution.pytorch.py").read_text()


class Serve:
    """``run_challenge.py serve --workers cpu:1`` with its own data folder, as a user runs it
    (no lock-folder variable: the folders must come from --data-dir alone)."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "serve.log"
        env = {k: v for k, v in os.environ.items() if k not in ("JUDGE_LOCK_DIR", "JUDGE_DATA_DIR")}
        # no parked job process (tests/judge/test_judge_prewarm.py covers it): every job folder
        # here is one that ran
        env["JUDGE_WORKER_NO_PREWARM"] = "1"
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "run_challenge.py"), "serve", "--port", str(self.port),
             "--data-dir", str(folder / "data"), "--workers", "cpu:1"],
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, env=env, cwd=folder,
            start_new_session=True)

    def health(self, until, timeout: float = 300.0) -> dict:
        """The first /healthz answer (status code, body) for which ``until`` holds."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                r = httpx.get(self.url + "/healthz", timeout=5)
                last = (r.status_code, r.json())
                if until(*last):
                    return last[1]
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"no such health within {timeout} s; last {last}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.log()


@pytest.fixture
def serves():
    started = []

    def start(folder: Path) -> Serve:
        started.append(Serve(folder))
        return started[-1]

    yield start
    for serve in started:
        serve.stop()


def alive(status, body) -> bool:
    return status == 200 and body["workers"]["cpu"]["alive"] == 1


def test_two_judges_on_one_machine_each_serve_with_their_own_worker(tmp_path, serves):
    first, second = serves(tmp_path / "a"), serves(tmp_path / "b")
    for serve in (first, second):
        health = serve.health(alive)
        assert health["status"] == "ok" and health["problems"] == []
    for serve in (first, second):
        workers = serve.folder / "data" / "workers"
        assert (workers / "judge-cpu0.lock").is_file(), serve.log()
        assert "cannot take its slot" not in serve.log()
    # each grades: its worker really serves it
    import websocket

    ws = websocket.create_connection(second.url.replace("http", "ws") + "/api/v1/ws/submit",
                                     timeout=300)
    try:
        ws.send(json.dumps({"action": "run", "token": None, "submission": {
            "files": [{"name": "solution.pytorch.py", "content": SOLUTION_96}],
            "language": "pytorch", "accelerator": "cpu", "mode": "accelerated",
            "public": False, "challengeCode": CODE_96}}))
        while True:
            msg = json.loads(ws.recv())
            assert "no worker" not in str(msg["output"]), msg
            if msg["status"] in ("success", "error", "timeout", "oom", "interrupted"):
                break
    finally:
        ws.close()
    assert msg["status"] == "success", msg
    jobs = second.folder / "data" / "workers" / "judge-jobs-cpu0"
    assert jobs.is_dir()                        # its job ran there...
    deadline = time.monotonic() + 120           # ...and is removed once its process has exited
    while list(jobs.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(jobs.iterdir())
    assert not (first.folder / "data" / "workers" / "judge-jobs-cpu0").exists()


def test_a_judge_whose_worker_slot_is_taken_says_so(tmp_path, serves):
    folder = tmp_path / "judge"
    lock_path = folder / "data" / "workers" / "judge-cpu0.lock"
    lock_path.parent.mkdir(parents=True)
    holder = open(lock_path, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.write(f"pid {os.getpid()}")
    holder.flush()
    try:
        serve = serves(folder)
        health = serve.health(lambda status, body: body["workers"]["cpu"]["unavailable"])
        assert health["status"] == "no_workers" and health["workers"]["cpu"]["alive"] == 0
        problem = health["problems"][0]
        assert problem.startswith("no worker can take submissions for cpu")
        assert f"already held by pid {os.getpid()}" in problem
        assert httpx.get(serve.url + "/healthz", timeout=5).status_code == 503

        # what is queued for cpu hears why in its stream
        import websocket

        ws = websocket.create_connection(serve.url.replace("http", "ws") + "/api/v1/ws/submit",
                                         timeout=120)
        try:
            ws.send(json.dumps({"action": "run", "token": None, "submission": {
                "files": [{"name": "solution.pytorch.py", "content": SOLUTION_96}],
                "language": "pytorch", "accelerator": "cpu", "mode": "accelerated",
                "public": False, "challengeCode": CODE_96}}))
            first, second = json.loads(ws.recv()), json.loads(ws.recv())
        finally:
            ws.close()
        assert first["status"] == "queued" and second["status"] == "queued"
        assert "no worker can take submissions for cpu" in second["output"]
        assert f"already held by pid {os.getpid()}" in second["output"]
    finally:
        holder.close()
    log = serve.stop()
    said = [line for line in log.splitlines() if "cannot take its slot" in line]
    assert len(said) == 1, log
    assert f"already held by pid {os.getpid()}" in said[0] and str(lock_path) in said[0]
    assert "Traceback" not in log and "usage error" not in log
