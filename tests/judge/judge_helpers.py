"""Helpers for the judge's tests (fixtures in conftest.py): a real judge (uvicorn in a subprocess) with real workers
(subprocesses on CPU slots), a tiny challenge, and a client written the way LeetGPU's public
client is."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHALLENGES = HERE / "challenges"
SOLUTIONS = HERE / "solutions"
CHALLENGE_CODE = (CHALLENGES / "easy" / "1_vector_add" / "challenge.py").read_text()
TERMINAL = ("success", "error", "timeout", "oom", "interrupted")

TOKENS = {
    "alice": ("alice-token-0123456789abcdef", ["user"]),
    "bob": ("bob-token-0123456789abcdef-bob", ["user"]),
    "carol": ("carol-token-0123456789abcdef-c", ["author"]),
    "root": ("root-token-0123456789abcdef-root", ["admin"]),
    "w1": ("worker-token-0123456789abcdef-w1", ["worker"]),
}


def token(name: str) -> str:
    return TOKENS[name][0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, **overrides: Any) -> Path:
    config: Dict[str, Any] = {
        "tokens": [{"name": n, "roles": r, "token": t} for n, (t, r) in TOKENS.items()],
        "challenges": [str(CHALLENGES)],
        "accelerators": {"cpu": ["T4", "NVIDIA TESLA T4"]},
        "workers": "none",
        "limits": {"time_limit_s": 20, "max_in_flight": 50, "rate_limit": 500,
                   "queue_capacity": 100, "first_message_timeout_s": 5},
        "leases": {"lease_s": 2.0, "heartbeat_s": 0.4, "reap_interval_s": 0.2,
                   "avoid_failed_worker_s": 3.0, "watchdog_margin_s": 5},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


def message(file: str = "correct.pytorch.py", action: str = "run", who: Optional[str] = "alice",
            **extra: Any) -> Dict[str, Any]:
    """LeetGPU's message for one of the test solutions."""
    submission = {"files": [{"name": "solution.pytorch.py",
                             "content": (SOLUTIONS / file).read_text()}],
                  "language": "pytorch", "accelerator": "cpu", "mode": "accelerated",
                  "public": False, "challengeCode": CHALLENGE_CODE}
    submission.update(extra.pop("submission", {}))
    msg = {"action": action, "token": token(who) if who else None, "submission": submission}
    msg.update(extra)
    return msg


def leetgpu_client(url: str, msg: Dict[str, Any], timeout: float = 60.0) -> List[Dict[str, Any]]:
    """What LeetGPU's public client does: connect to <URL>/api/v1/ws/submit, send one JSON
    message, log every {status, output} message until a terminal status."""
    import websocket

    ws = websocket.create_connection(url.replace("http://", "ws://") + "/api/v1/ws/submit",
                                     timeout=timeout)
    log: List[Dict[str, Any]] = []
    try:
        ws.send(json.dumps(msg))
        while True:
            data = json.loads(ws.recv())
            assert "status" in data and "output" in data, data
            log.append(data)
            if data["status"] in TERMINAL:
                return log
    finally:
        ws.close()


class Judge:
    """A judge API in a subprocess (restartable, killable) and its workers."""

    def __init__(self, tmp: Path, config: Path, env: Optional[Dict[str, str]] = None):
        self.tmp, self.config = tmp, config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api: Optional[subprocess.Popen] = None
        self.workers: Dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)

    def start_api(self, wait: bool = True) -> None:
        log = open(self.logs / "api.log", "ab")
        self.api = subprocess.Popen(
            [sys.executable, str(REPO / "run_challenge.py"), "serve", "--port", str(self.port),
             "--config", str(self.config), "--data-dir", str(self.tmp / "data"), "--api-only",
             "--log-level", "warning"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api is not None and self.api.poll() is not None:
                raise AssertionError(f"the judge exited: {(self.logs / 'api.log').read_text()}")
            try:
                # serving (its store answers), with or without workers yet
                if httpx.get(self.url + "/healthz", timeout=1).json().get("store") == "ok":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError("the judge did not become healthy")

    def kill_api(self) -> None:
        if self.api is not None and self.api.poll() is None:
            os.killpg(self.api.pid, signal.SIGKILL)
            self.api.wait()

    def start_worker(self, name: str, crash_at: Optional[str] = None,
                     extra: Optional[List[str]] = None, worker_token: str = token("w1")) -> subprocess.Popen:
        env = {**self.env, "JUDGE_WORKER_TOKEN": worker_token}
        if crash_at:
            env["JUDGE_WORKER_CRASH_AT"] = crash_at
        log = open(self.logs / f"worker-{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.judge.worker", "--url", self.url, "--accelerator",
             "cpu", "--cpu", name, "--name", name, "--challenges", str(CHALLENGES),
             "--lock-dir", str(self.tmp / "locks"), "--watchdog-margin", "5", *(extra or [])],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        key, n = name, 1
        while key in self.workers:             # the same slot twice: keep both to stop later
            n += 1
            key = f"{name}#{n}"
        self.workers[key] = proc
        return proc

    def kill_worker(self, name: str, group: bool = False) -> None:
        """SIGKILL the worker's main process only (its job process notices and ends itself),
        or its whole process group."""
        proc = self.workers.pop(name)
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
        proc.wait()

    def http(self, who: Optional[str] = "alice") -> httpx.Client:
        headers = {"Authorization": f"Bearer {token(who)}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def submit(self, msg: Dict[str, Any]) -> str:
        with self.http(None) as c:
            r = c.post("/api/v1/submissions", json=msg)
        assert r.status_code == 202, r.text
        return r.json()["submissionId"]

    def events(self, sid: str, who: str = "alice", after: int = -1, wait: float = 0) -> List[dict]:
        with self.http(who) as c:
            r = c.get(f"/api/v1/submissions/{sid}/events", params={"after": after, "wait": wait})
        assert r.status_code == 200, r.text
        return r.json()["events"]

    def wait_for_event(self, sid: str, predicate, timeout: float = 30.0, who: str = "alice") -> dict:
        deadline, seen = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            try:
                for event in self.events(sid, who, after=seen, wait=1):
                    seen = event["seq"]
                    if predicate(event):
                        return event
            except (httpx.HTTPError, AssertionError):
                time.sleep(0.2)     # the API is being restarted
        raise AssertionError(f"no matching event for {sid} within {timeout} s")

    def wait_terminal(self, sid: str, timeout: float = 60.0, who: str = "alice") -> dict:
        return self.wait_for_event(sid, lambda e: e["status"] in TERMINAL, timeout, who)

    def record(self, sid: str, who: str = "alice") -> dict:
        with self.http(who) as c:
            r = c.get(f"/api/v1/submissions/{sid}")
        assert r.status_code == 200, r.text
        return r.json()

    def close(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name, group=True)
        self.kill_api()

    def dump_logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.iterdir()))


def terminal_events(events: List[dict]) -> List[dict]:
    return [e for e in events if e["status"] in TERMINAL]


def postgres_url() -> str:
    """$JUDGE_TEST_POSTGRES_URL, or skip the test saying why."""
    import pytest

    url = os.environ.get("JUDGE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL: set JUDGE_TEST_POSTGRES_URL (CI's .ci/run starts one)")
    try:
        import psycopg
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at $JUDGE_TEST_POSTGRES_URL is not reachable: {exc}")
    return url


def fresh_store(kind: str, folder: Path):
    """An empty judge store: SQLite in ``folder``, or the test PostgreSQL with its tables
    dropped first."""
    from runner.judge.server.storage.sqlite import SQLiteStore
    from runner.judge.server.storage import open_store

    if kind == "sqlite":
        return SQLiteStore(folder / "judge.sqlite3")
    import psycopg

    url = postgres_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS submissions, events, admissions, lb_candidates")
    return open_store(url, folder)
