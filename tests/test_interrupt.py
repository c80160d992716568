"""Ctrl-C during a grading: one line "interrupted", exit code 130, with --json one object with
status `interrupted`; the sandboxed child and its folder are gone afterwards."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import REPO

HANG = REPO / "tests" / "corpus" / "python_hang.pytorch.py"


def start(tmp_path, *extra):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "96", "--solution",
                             str(HANG), *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_line(stream, needle, timeout=600.0):
    """Lines of ``stream`` up to the first that contains ``needle`` (read in a thread: no
    deadline on start-up here beyond a generous one)."""
    lines: "queue.Queue" = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put(None)               # the end of the stream

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        seen.append(line)
        if line is not None and needle in line:
            return seen, lines
    raise AssertionError(f"{needle!r} never came; saw {seen}")


def submission_processes(tmp_path):
    """Pids whose command line names a folder under ``tmp_path`` (the sandbox's child does)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if str(tmp_path).encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_prints_interrupted_exits_130_and_cleans_up(tmp_path, as_json):
    proc = start(tmp_path, *(["--json"] if as_json else []))
    try:
        _, rest = wait_for_line(proc.stderr, "running example")
        assert submission_processes(tmp_path), "the sandboxed child should be running"
        os.killpg(proc.pid, signal.SIGINT)          # what a terminal's Ctrl-C does
        out = proc.stdout.read()
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = []
    while True:
        line = rest.get(timeout=60)
        if line is None:
            break
        err.append(line)
    assert "Traceback" not in "".join(err)
    assert err and err[-1].strip() == "interrupted", err
    if as_json:
        result = json.loads(out)
        assert result["status"] == "interrupted" and result["verdict"] == "interrupted"
        assert result["challenge"] == "96"
    else:
        assert out.strip() == ""
    assert submission_processes(tmp_path) == []
    assert not list(tmp_path.glob("grading-*")), "the job folder was left behind"


def test_an_interrupted_submit_keeps_the_tests_that_ran(tmp_path):
    matmul = REPO / "tests" / "fixtures" / "timing" / "easy" / "1_matmul"
    solution = REPO / "tests" / "harness_solutions" / "matmul_hangs_in_performance.pytorch.py"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), str(matmul),
                             "--solution", str(solution), "--action", "submit", "--json"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, rest = wait_for_line(proc.stderr, "running the performance test")
        os.killpg(proc.pid, signal.SIGINT)
        out = proc.stdout.read()
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = json.loads(out)
    assert result["verdict"] == "interrupted"
    assert [t["passed"] for t in result["tests"]] == [True, True, True], result["tests"]
    assert [t["params"]["N"] for t in result["tests"]] == [1, 7, 64]
    assert "3 test(s) had run, 3 passed" in result["message"], result["message"]
