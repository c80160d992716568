"""`run_challenge.py serve` stops quietly: Ctrl-C (SIGINT to its whole process group, as a
terminal sends it) or SIGTERM drains and exits 0 with no traceback; worker polls are logged at
DEBUG, not INFO; `serve` is named in `run_challenge.py --help`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.judge.judge_helpers import free_port, write_config
from tests.helpers import REPO, run_cli


def _start(tmp_path, *extra):
    config = write_config(tmp_path / "judge.yaml", workers="cpu:1",
                          challenges=[str(REPO / "challenges")])
    port = free_port()
    private = tmp_path / "private"
    private.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "JUDGE_LOCK_DIR": str(private),
           "TMPDIR": str(private)}
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve", "--port",
                             str(port), "--config", str(config), "--data-dir",
                             str(tmp_path / "data"), *extra],
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, f"serve exited: {log.read_text()}"
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            if body.get("status") == "ok":      # its worker has reported for itself
                return proc, log
        except (httpx.HTTPError, ValueError):
            pass
        assert time.monotonic() < deadline, f"serve never became healthy: {log.read_text()}"
        time.sleep(0.3)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how, level", [("ctrl-c", "info"), ("sigterm", "info"),
                                        ("sigterm", "debug")])
def test_serve_stops_quietly_and_exits_0(tmp_path, how, level):
    proc, log = _start(tmp_path, "--log-level", level)
    try:
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)     # the terminal's Ctrl-C: serve and its workers
        else:
            proc.send_signal(signal.SIGTERM)       # systemd's stop: serve alone
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "drained and shut down cleanly" in text, text
    # the worker's long-poll claims ran all along (ended at shutdown), logged only at DEBUG
    assert ("/api/v1/worker/claim" in text) == (level == "debug"), text


def _access_record(path: str, status: int) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5", "POST", path, "1.1", status), None)


def test_worker_polls_are_debug_lines_and_other_requests_stay_info():
    from runner.judge.serve import WorkerPollsAtDebug

    quiet = WorkerPollsAtDebug()
    access = logging.getLogger("uvicorn.access")
    before = access.level
    try:
        access.setLevel(logging.INFO)
        assert not quiet.filter(_access_record("/api/v1/worker/claim", 204))
        assert not quiet.filter(_access_record("/api/v1/worker/abc/heartbeat", 200))
        assert quiet.filter(_access_record("/api/v1/worker/claim", 401))     # refused: shown
        assert quiet.filter(_access_record("/api/v1/submissions", 200))
        access.setLevel(logging.DEBUG)
        record = _access_record("/api/v1/worker/claim", 204)
        assert quiet.filter(record) and record.levelname == "DEBUG"
    finally:
        access.setLevel(before)


def test_serve_is_named_in_the_help():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "run_challenge.py serve" in proc.stdout, proc.stdout
