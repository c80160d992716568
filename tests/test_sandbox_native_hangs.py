"""Submissions stuck in native code, graded in the sandbox: each ends ``time_limit_exceeded``
within its limit plus a bounded margin (however it is stuck, and even when its process is not
reaped after SIGKILL), nothing it started outlives the grading, and a correct solution graded
right after by the same process is accepted. Also: files the child plants in its job folder
(FIFOs) cannot block the grader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dataclasses import replace

import pytest
import torch

import native_hangs
from runner import procs
from runner.catalog import find_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.sandbox.limits import Limits

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent
CORRECT = REPO / "challenges/medium/96_int8_kv_cache_attention/reference/solution.pytorch.py"
PARAMS = ["Q", "K_int8", "V_int8", "k_scale", "v_scale", "output", "num_heads", "seq_len",
          "head_dim"]
LIMIT_S = 3.0
MARGIN_S = 150.0     # generous: the child's start and torch import on a loaded machine (the
#                      limit itself counts from the child's "ready"), the kill, the reap


def grade(path: Path, **limits):
    """Graded in the jail, except the escapees: they report their pids through files in the
    test's folder, which a jail cannot write (in a jail, the PID namespace takes every process
    down with it: tests/judge/test_escape.py)."""
    if "escapee" in path.name:
        limits.setdefault("sandbox", "off")
    options = GradeOptions(action="run", device=torch.device("cpu"), time_budget_s=0.5)
    started = time.monotonic()
    result = grade_safely(find_challenge("96"), path, "pytorch", replace(options, limits=Limits(**limits)))
    return result, time.monotonic() - started


def assert_next_grading_is_clean() -> None:
    result, _ = grade(CORRECT)
    assert result.verdict == "accepted", (result.verdict, result.message, result.details[-2000:])


def write(tmp_path: Path, kind: str, so=None) -> Path:
    path = tmp_path / f"{kind}.pytorch.py"
    path.write_text(native_hangs.solution(kind, PARAMS, tmp_path, so))
    return path


@pytest.mark.parametrize("kind", ["pause", "gil_spin", "ignores_signals", "escapee"])
def test_a_native_hang_ends_time_limit_exceeded_and_the_next_grading_is_clean(tmp_path, kind):
    so = None
    if kind == "gil_spin":
        so = native_hangs.build_spin_library(tmp_path)
        if so is None:
            pytest.skip("no C compiler here to build the spinning library")
    result, seconds = grade(write(tmp_path, kind, so), timeout_s=LIMIT_S)
    assert result.verdict == "time_limit_exceeded", (result.verdict, result.message,
                                                     result.details[-2000:])
    assert f"within the limit of {LIMIT_S:g} s" in result.message
    assert "running example" in result.message      # it was stuck in solve
    assert seconds < LIMIT_S + MARGIN_S, seconds
    if kind == "escapee":
        native_hangs.assert_gone(native_hangs.escapee_pid(tmp_path, kind))
    assert_next_grading_is_clean()


def test_a_grandchild_left_behind_by_a_process_that_exited_is_killed(tmp_path):
    """The submission's process (unjailed: in a jail the PID namespace takes it down) starts
    a grandchild in a session of its own, which keeps the report pipe open, and exits. The
    grading process is a subreaper, as ``run_challenge.py`` is: the orphan is re-parented to
    it, and the sandbox kills it."""
    path = write(tmp_path, "escapee_exit")
    started = time.monotonic()
    script = ("import sys\n"
              "from runner.procs import become_subreaper\n"
              "from runner.catalog import find_challenge\n"
              "from runner.grader.grade import grade_safely\n"
              "from runner.grader.options import GradeOptions\n"
              "from runner.sandbox.limits import Limits\n"
              "become_subreaper()\n"
              "options = GradeOptions(limits=Limits(timeout_s=float(sys.argv[2]), sandbox='off'))\n"
              "print(grade_safely(find_challenge('96'), sys.argv[1], 'pytorch', options).to_json())\n")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(LIMIT_S)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.monotonic() - started
    result = json.loads(done.stdout)
    assert result["verdict"] == "runtime_error", (result, done.stderr[-2000:])
    assert "exited with code 0" in result["message"]
    assert seconds < LIMIT_S + MARGIN_S, seconds
    native_hangs.assert_gone(native_hangs.escapee_pid(tmp_path, "escapee_exit"))


def test_a_child_not_reaped_after_sigkill_is_reported_without_waiting(tmp_path, held_sigkills):
    """As when the GPU driver takes long to tear a killed process's context down: the
    verdict comes kill_wait_s after the kill, and the child is reaped later."""
    result, seconds = grade(write(tmp_path, "pause"), timeout_s=LIMIT_S, kill_wait_s=1.0)
    held = list(held_sigkills)
    held_sigkills.release()
    assert result.verdict == "time_limit_exceeded", (result.verdict, result.message)
    assert any("had not exited 1 s after it was killed" in n for n in result.notes), result.notes
    assert seconds < LIMIT_S + MARGIN_S, seconds
    assert held, "the child was never sent SIGKILL"
    assert_next_grading_is_clean()


DATA_TRAP = '''
def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    import json, os, time
    line = (json.dumps({"kind": "case", "payload": {"index": 0, "modified_inputs": [],
                                                    "guard_damage": []},
                        "tensors": ["output"]}) + "\\n").encode()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                os.write(int(fd), line + b"\\0" * 3)   # a few bytes of the outputs, never the rest
        except OSError:
            pass
    while True:
        time.sleep(1)
'''


def test_outputs_announced_and_never_sent_do_not_block_the_grader(tmp_path):
    """The grader reads a message's raw outputs with the grading's own deadline: a child that
    names its outputs and then sends too few bytes is stopped at the time limit."""
    path = tmp_path / "data_trap.pytorch.py"
    path.write_text(DATA_TRAP)
    result, seconds = grade(path, timeout_s=LIMIT_S)
    assert result.verdict == "time_limit_exceeded", (result.verdict, result.message)
    assert seconds < LIMIT_S + MARGIN_S, seconds
    assert_next_grading_is_clean()


def test_a_progress_flood_is_not_passed_on_line_by_line(tmp_path):
    path = tmp_path / "flood.pytorch.py"
    path.write_text('''
def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    import json, os, sys
    def is_pipe(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:           # the listing's own descriptor, closed by now
            return False
    pipes = [int(fd) for fd in os.listdir("/proc/self/fd") if is_pipe(fd)]
    for k in range(200000):
        for fd in pipes:
            try:
                os.write(fd, (json.dumps({"kind": "progress", "payload": {"message": f"x{k}"}}) + "\\n").encode())
            except OSError:
                pass
    while True:
        pass
''')
    seen = []
    options = GradeOptions(action="run", device=torch.device("cpu"), progress=seen.append)
    started = time.monotonic()
    result = grade_safely(find_challenge("96"), path, "pytorch",
                          replace(options, limits=Limits(timeout_s=LIMIT_S)))
    assert result.verdict == "time_limit_exceeded", (result.verdict, result.message)
    assert time.monotonic() - started < LIMIT_S + MARGIN_S
    assert len(seen) <= 1000


def test_kill_tree_finds_descendants_that_left_the_session(tmp_path):
    """procs.kill_tree on its own: a subreaper's grandchild in a session of its own dies."""
    script = ("import os, sys, subprocess, time\n"
              "from runner import procs\n"
              "procs.become_subreaper()\n"
              f"subprocess.Popen([sys.executable, '-c', {native_hangs._ESCAPEE!r}, "
              f"{native_hangs.ESCAPEE_MARK!r}, sys.argv[1]])\n"
              "time.sleep(60)\n")
    pidfile = tmp_path / "grandchild.pid"
    proc = subprocess.Popen([sys.executable, "-c", script, str(pidfile)], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(pidfile.read_text())
        assert grandchild in procs.descendants(proc.pid)
        assert os.getsid(grandchild) != proc.pid
        procs.kill_tree(proc.pid, groups=[proc.pid], sessions=[proc.pid])
        assert procs.wait_exited(proc, 5)
        native_hangs.assert_gone(grandchild)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_line_reader_never_blocks_and_splits_long_lines():
    r, w = os.pipe()
    reader = procs.LineReader(r, max_line=8)
    try:
        started = time.monotonic()
        assert reader.read(timeout=0.1) == []              # nothing written: returns
        assert time.monotonic() - started < 2
        os.write(w, b"ab\ncdefghijklmn\npartial")
        assert reader.read(timeout=1) == [b"ab\n", b"cdefghij", b"klmn\n"]
        os.close(w)
        assert reader.read(timeout=1) == [b"partial"] and reader.finished
    finally:
        reader.close()
    assert json.loads(b'{"a": 1}\n') == {"a": 1}
