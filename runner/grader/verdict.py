"""The one rule that decides a grading's verdict and its message (:func:`decide`).

Everything it rests on arrives as :class:`Evidence`, gathered by the others: how the child
ended (:class:`runner.sandbox.watch.Ending`), what the conversation checked
(:mod:`runner.grader.conversation`: the test reports, the child's own error, a tampering
report, what it failed to send), what the grading could not even start with (no sandbox, a
CUDA build that failed, a bug of ours) and the performance section
(:mod:`runner.grader.performance`), measured only once every check before it passed. The
order of the rules below is the policy: the first that applies decides.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from runner import protocol
from runner.grader.performance import PerformanceOutcome
from runner.grader.truth import RULE
from runner.protocol import Verdict
from runner.report import Result, TestReport
from runner.sandbox import watch
from runner.sandbox.watch import Ending

NOT_RUN_AFTER_FAILURE = ("the performance test was not run: a functional test failed (fix "
                         "that first; submit again to be timed)")

SIGNAL_NAMES = {
    signal.SIGSEGV: "SIGSEGV (segmentation fault: a bad host pointer?)",
    signal.SIGABRT: "SIGABRT (abort)",
    signal.SIGBUS: "SIGBUS (bus error)",
    signal.SIGFPE: "SIGFPE (arithmetic error)",
    signal.SIGILL: "SIGILL (illegal instruction)",
    signal.SIGKILL: "SIGKILL",
    signal.SIGTERM: "SIGTERM",
    signal.SIGSYS: "SIGSYS (a system call the sandbox does not allow)",
}


@dataclass
class Evidence:
    """What one grading found, for :func:`decide`."""

    action: str                                   # "run" or "submit"
    # before any child: why no jail could be made, a bug of ours (its traceback), the CUDA
    # build's failure as (verdict, message, details)
    no_sandbox: Optional[str] = None
    harness_bug: Optional[str] = None
    build_error: Optional[Tuple[str, str, str]] = None
    ending: Optional[Ending] = None               # how the child ended
    tampering: Optional[str] = None               # the child's report of interference
    internal: Optional[str] = None                # the grader's code failed in the child
    tests: List[TestReport] = field(default_factory=list)
    child_error: Optional[Tuple[Verdict, str, str]] = None   # the failure the child reported
    submit: bool = False                          # a submit with a performance case (planned)
    missing: str = ""                             # what the child should have reported, did not
    perf_left_out: Optional[str] = None           # why a submit has no performance case (None:
    #                                               it has one)
    perf_reports: List[TestReport] = field(default_factory=list)
    sample_failures: List[TestReport] = field(default_factory=list)
    # the performance section, measured only when the verdict gets that far (it times the
    # reference on the device)
    measure_performance: Optional[Callable[[], PerformanceOutcome]] = None


def _fail(result: Result, verdict: Verdict, message: str, details: str = "") -> Result:
    result.verdict, result.message, result.details = verdict.value, message, details
    return result


def decide(evidence: Evidence, result: Result) -> Result:
    """``result`` with the verdict, its message and details, and what goes with them (the
    tests, the performance section, the float64 rule's note)."""
    if evidence.no_sandbox is not None:
        return _fail(result, Verdict.INTERNAL_ERROR,
                     f"grading needs a sandbox and none can be made here: {evidence.no_sandbox}")
    if evidence.harness_bug is not None:
        return _fail(result, Verdict.INTERNAL_ERROR,
                     "the grader failed (a bug in the harness, not in your solution); "
                     "please report it with the details below", evidence.harness_bug)
    if evidence.build_error is not None:
        verdict, message, details = evidence.build_error
        result.verdict, result.message, result.details = verdict, message, details
        return result
    ending = evidence.ending or Ending()
    if evidence.tampering:
        return _fail(result, Verdict.REJECTED, evidence.tampering)
    if ending.cause == watch.PROTOCOL:
        return _fail(result, Verdict.REJECTED, f"{protocol.INTERFERENCE}: {ending.violation}")
    if evidence.internal is not None:
        return _fail(result, Verdict.INTERNAL_ERROR,
                     "the grader failed inside the submission process (a bug in the "
                     "harness, or your code broke its internals)", evidence.internal)
    result.tests = list(evidence.tests)
    failed = [t for t in evidence.tests if not t.passed]
    if failed:
        first = failed[0]
        if evidence.submit:
            result.performance = {"timed": False, "run": False, "reason": NOT_RUN_AFTER_FAILURE}
        return _fail(result, Verdict.WRONG_ANSWER,
                     f"{len(failed)} of {len(evidence.tests)} tests failed; first: {first.name} "
                     f"({', '.join(f'{k}={v}' for k, v in first.params.items())}): "
                     f"{first.message.splitlines()[0]}")
    if evidence.child_error is not None:
        verdict, message, details = evidence.child_error
        return _fail(result, verdict, message, details)
    if not ending.finished:
        return _fail(result, *how_it_ended(ending))
    if evidence.missing:
        return _fail(result, Verdict.REJECTED,
                     f"{protocol.INTERFERENCE}: the submission's process said it was done "
                     f"without reporting {evidence.missing}")
    if evidence.action == "submit" and evidence.perf_left_out is not None:
        result.performance = {"timed": False, "reason": evidence.perf_left_out}
    elif evidence.action == "submit":
        reports = evidence.sample_failures + evidence.perf_reports
        bad = [r for r in reports if not r.passed]
        result.tests.append(bad[0] if bad else evidence.perf_reports[0])
        if bad:
            return _fail(result, Verdict.WRONG_ANSWER,
                         f"performance test: {bad[0].message.splitlines()[0]}")
        assert evidence.measure_performance is not None
        outcome = evidence.measure_performance()
        if outcome.contradiction:
            return _fail(result, Verdict.REJECTED, outcome.contradiction)
        result.performance = outcome.section
    result.message = ("example test passed" if evidence.action == "run"
                      else f"all {len(result.tests)} tests passed")
    ruled = [t.name for t in result.tests if t.passed and RULE in t.message]
    if ruled:
        result.notes.append(
            f"the rule '{RULE}' was used on {', '.join(ruled)}: there the float32 reference "
            f"itself misses the tolerance against the float64 answer, and your output was "
            f"at least as close to that answer as the reference is (the test's message says "
            f"by how much)")
    return result


def how_it_ended(ending: Ending) -> Tuple[Verdict, str]:
    """The verdict and message of a child that did not finish: the limit it passed, the signal
    that killed it, or its own exit."""
    limits, cause, code = ending.limits, ending.cause, ending.returncode
    during = f" (while {ending.phase})" if ending.phase else ""
    if cause == watch.TIME:
        limit = limits.startup_s if ending.phase == "starting" else limits.timeout_s
        return Verdict.TIME_LIMIT_EXCEEDED, (f"grading did not finish within the limit of "
                                             f"{limit:g} s{during}: a loop or kernel that "
                                             f"never ends?")
    if cause == watch.MEMORY:
        return Verdict.MEMORY_LIMIT_EXCEEDED, (
            f"the submission used more than {limits.host_memory_bytes / 2**30:.1f} GiB "
            f"of host memory, counting every process it started{during}")
    if cause == watch.KERNEL_MEMORY:
        return Verdict.MEMORY_LIMIT_EXCEEDED, (
            f"the submission used more than {limits.host_memory_bytes / 2**30:.1f} "
            f"GiB of host memory, as the kernel counts it: every process it started, "
            f"memfds and shared memory, and the files it wrote in its scratch space")
    if cause == watch.PROCESSES:
        return Verdict.RUNTIME_ERROR, (f"the submission ran more than {limits.max_processes} "
                                       f"processes at once{during}; solutions must not fork")
    if cause == watch.THREADS:
        return Verdict.RUNTIME_ERROR, (f"the submission ran more than {limits.max_threads} "
                                       f"threads at once{during}")
    if cause == watch.DISK:
        return Verdict.RUNTIME_ERROR, (
            f"the submission wrote more than {limits.disk_bytes / 2**30:.1f} GiB "
            f"(or too many files) in its working folder{during}")
    if cause != watch.EXITED:
        return Verdict.RUNTIME_ERROR, ""     # no process of its own (--no-sandbox)
    if code is not None and code < 0:
        sig = -code
    elif ending.isolated and code is not None and code > 128 and ending.phase != "starting":
        sig = code - 128         # bwrap reports its child's signal as 128 + n
    else:
        return Verdict.RUNTIME_ERROR, (f"the submission's process exited with code {code}"
                                       f"{during} before grading finished: does your code "
                                       f"call os._exit() or exit()?")
    return Verdict.RUNTIME_ERROR, (f"the submission's process was killed by "
                                   f"{SIGNAL_NAMES.get(sig, f'signal {sig}')}{during}")
