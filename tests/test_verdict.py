"""The one verdict rule (runner/grader/verdict.py): its order, and how a child's ending reads."""

from __future__ import annotations

from runner.grader.performance import PerformanceOutcome
from runner.grader.verdict import Evidence, decide, how_it_ended
from runner.protocol import INTERFERENCE, Verdict
from runner.report import Result
from runner.report import TestReport as Report
from runner.sandbox import watch
from runner.sandbox.limits import Limits
from runner.sandbox.watch import Ending


def _decide(**evidence) -> Result:
    return decide(Evidence(**evidence), Result(verdict=Verdict.ACCEPTED.value))


def test_the_first_rule_that_applies_decides():
    failed = Report(name="t1", passed=False, params={"n": 3}, message="wrong\nmore")
    measured = []
    result = _decide(action="submit", ending=Ending(finished=True), tests=[failed],
                     tampering=f"{INTERFERENCE}: patched", submit=True,
                     measure_performance=lambda: measured.append(1))
    assert (result.verdict, result.message) == ("rejected", f"{INTERFERENCE}: patched")
    result = _decide(action="submit", ending=Ending(cause=watch.PROTOCOL, violation="a lie"),
                     tests=[failed], submit=True)
    assert (result.verdict, result.message) == ("rejected", f"{INTERFERENCE}: a lie")
    result = _decide(action="submit", ending=Ending(finished=True), tests=[failed], submit=True,
                     measure_performance=lambda: measured.append(1))
    assert result.verdict == "wrong_answer" and result.message == \
        "1 of 1 tests failed; first: t1 (n=3): wrong"
    assert result.performance["run"] is False and not measured


def test_the_performance_outcome_is_measured_last_and_may_reject():
    passed = Report(name="t1", passed=True)
    perf = Report(name="performance", passed=True)
    common = dict(action="submit", ending=Ending(finished=True), tests=[passed], submit=True,
                  perf_reports=[perf])
    result = _decide(**common, measure_performance=lambda: PerformanceOutcome({"timed": True}))
    assert result.verdict == "accepted" and result.message == "all 2 tests passed"
    assert result.performance == {"timed": True}
    result = _decide(**common, measure_performance=lambda: PerformanceOutcome(
        {"timed": True}, contradiction="impossible"))
    assert (result.verdict, result.message, result.performance) == ("rejected", "impossible", None)


def test_an_ending_reads_as_its_limit_signal_or_exit():
    limits = Limits(timeout_s=5, host_memory_bytes=2 * 2**30)
    assert how_it_ended(Ending(cause=watch.TIME, phase="case 2", limits=limits)) == (
        Verdict.TIME_LIMIT_EXCEEDED,
        "grading did not finish within the limit of 5 s (while case 2): a loop or kernel that "
        "never ends?")
    assert how_it_ended(Ending(cause=watch.EXITED, returncode=-11, limits=limits))[1] == \
        "the submission's process was killed by SIGSEGV (segmentation fault: a bad host pointer?)"
    assert how_it_ended(Ending(cause=watch.EXITED, returncode=139, isolated=True,
                               phase="loading", limits=limits))[1].startswith(
        "the submission's process was killed by SIGSEGV")
    verdict, message = how_it_ended(Ending(cause=watch.KERNEL_MEMORY, limits=limits))
    assert verdict == Verdict.MEMORY_LIMIT_EXCEEDED and "2.0 GiB" in message
    assert how_it_ended(Ending()) == (Verdict.RUNTIME_ERROR, "")
