"""A failing functional test ends a `submit`: the performance case is not run (it could take
minutes and its answer would be thrown away), and the report says so and why."""

from __future__ import annotations

from pathlib import Path

import torch

from runner.catalog import find_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.grader.verdict import NOT_RUN_AFTER_FAILURE
from runner.report import render_text

HERE = Path(__file__).parent
MATMUL = HERE / "fixtures" / "timing" / "easy" / "1_matmul"
WRONG = HERE / "harness_solutions" / "matmul_wrong_on_7.pytorch.py"
CORRECT = HERE / "corpus" / "matmul" / "correct.pytorch.py"


def _submit(solution: Path, isolate: bool):
    options = GradeOptions(action="submit", device=torch.device("cpu"), isolate=isolate,
                           time_budget_s=0.3, burst_s=0.05)
    return grade_safely(find_challenge(str(MATMUL)), solution, "pytorch", options)


def test_a_failed_functional_test_skips_the_performance_case(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CALLS_LOG", str(calls))
    result = _submit(WRONG, isolate=False)
    assert result.verdict == "wrong_answer", result.message
    called = [int(n) for n in calls.read_text().split()]
    assert 7 in called and 384 not in called, called        # 384: the performance case
    assert [t.name for t in result.tests if t.name.startswith("performance")] == []
    assert result.performance == {"timed": False, "run": False, "reason": NOT_RUN_AFTER_FAILURE}
    text = render_text(result)
    assert "performance test was not run: a functional test failed" in text, text


def test_the_jailed_child_also_stops_and_a_correct_one_goes_on():
    wrong = _submit(WRONG, isolate=True)
    assert wrong.verdict == "wrong_answer", (wrong.verdict, wrong.message, wrong.details[-2000:])
    assert wrong.performance["run"] is False
    right = _submit(CORRECT, isolate=True)
    assert right.verdict == "accepted", (right.verdict, right.message, right.details[-2000:])
    assert right.tests[-1].name == "performance" and right.performance.get("run") is not False


def test_perf_first_is_out_of_place_unless_the_grader_asked_for_it():
    import pytest

    from runner import protocol
    from runner.protocol import ProtocolViolation, Transcript

    t = Transcript(1, True)
    for kind, payload in ((protocol.SANDBOX, {}), (protocol.READY, {}), (protocol.CASE, {"index": 0})):
        t.admit(kind, payload)
    with pytest.raises(ProtocolViolation, match="'perf_first' message out of place"):
        t.admit(protocol.PERF_FIRST, {})
    t.expect(protocol.PERF_FIRST)
    t.admit(protocol.PERF_FIRST, {})
