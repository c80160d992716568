"""The grader believes only what it checked or measured itself (runner.protocol, runner.grade):
the message schema and order, verdicts the child may not claim, forged reports and times,
remembered answers and skipped work. The CPU-checkable cheats run here through the jailed
child; the GPU ones are in test_sandbox_corpus.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from runner import protocol
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.grade import GradeOptions, grade_safely
from runner.perturb import run_generator
from runner.protocol import ProtocolViolation, Transcript, Verdict

CORPUS = Path(__file__).parent / "corpus"
MATMUL = Path(__file__).parent / "fixtures" / "timing" / "easy" / "1_matmul"
HELPERS = ("_channel.py", "_forgers.py", "_correct.py")


def staged(tmp_path: Path, relative: str) -> Path:
    for helper in HELPERS:
        shutil.copy(CORPUS / helper, tmp_path / helper)
    return Path(shutil.copy(CORPUS / relative, tmp_path / Path(relative).name))


def grade(challenge, path: Path, action: str, **options):
    opts = GradeOptions(action=action, device=torch.device("cpu"), time_budget_s=0.3,
                        burst_s=0.05, **options)
    return grade_safely(find_challenge(str(challenge)), path, "pytorch", opts)


# -- the schema and the order of messages ------------------------------------------------------

@pytest.mark.parametrize("record, why", [
    ({"kind": "verdict", "payload": {}}, "unknown kind"),
    ({"kind": "case", "payload": {"index": "0"}}, "malformed"),
    ({"kind": "case", "payload": {"index": 0}, "extra": 1}, "not {kind"),
    ({"kind": "timing", "payload": {"samples_ms": [1.0], "digests": []}}, "malformed"),
    ({"kind": "ready", "payload": {}, "tensors": ["output"]}, "unexpected tensors"),
    # outputs are named, never files: a path, an unsorted or repeated list is refused
    ({"kind": "case", "payload": {"index": 0, "modified_inputs": [], "guard_damage": []},
      "tensors": "x.pt"}, "unexpected tensors"),
    ({"kind": "case", "payload": {"index": 0, "modified_inputs": [], "guard_damage": []},
      "tensors": ["b", "a"]}, "unexpected tensors"),
    ({"kind": "case", "payload": {"index": 0, "modified_inputs": [], "guard_damage": []},
      "tensors": ["a", "a"]}, "unexpected tensors"),
    (["case"], "not {kind"),
])
def test_malformed_messages_are_violations(record, why):
    with pytest.raises(ProtocolViolation, match=why.replace("{", r"\{")):
        protocol.parse(record)


def _transcript(submit=False, cases=2):
    t = Transcript(cases, submit)
    t.admit(protocol.SANDBOX, {})
    t.admit(protocol.READY, {})
    return t


def test_the_transcript_refuses_out_of_order_duplicate_and_late_messages():
    t = _transcript()
    with pytest.raises(ProtocolViolation, match="result for test 1 where the result for test 0"):
        t.admit(protocol.CASE, {"index": 1})
    t = _transcript()
    with pytest.raises(ProtocolViolation, match="'ready' message out of place"):
        t.admit(protocol.READY, {})
    t = _transcript()
    t.admit(protocol.CASE, {"index": 0})
    with pytest.raises(ProtocolViolation, match="where the result for test 1"):
        t.admit(protocol.CASE, {"index": 0})
    t.admit(protocol.CASE, {"index": 1})
    with pytest.raises(ProtocolViolation, match="did not ask for"):
        t.admit(protocol.SAMPLE, {})
    t.admit(protocol.DONE, {})
    with pytest.raises(ProtocolViolation, match="after 'done'"):
        t.admit(protocol.PROGRESS, {})
    t = _transcript()
    t.admit(protocol.ERROR, {})
    with pytest.raises(ProtocolViolation, match="after an error"):
        t.admit(protocol.CASE, {"index": 0})


@pytest.mark.parametrize("verdict", ["accepted", "wrong_answer", "time_limit_exceeded",
                                     "internal_error", "compiled", "no_such_verdict"])
def test_the_child_may_not_claim_verdicts_that_only_the_grader_decides(verdict):
    with pytest.raises(ProtocolViolation):
        protocol.child_verdict({"verdict": verdict})


@pytest.mark.parametrize("verdict", sorted(v.value for v in protocol.CHILD_VERDICTS))
def test_the_child_may_report_its_own_failures(verdict):
    assert protocol.child_verdict({"verdict": verdict}) == Verdict(verdict)


# -- perturbation: every timed run sees inputs that change its answer -----------------------------

@pytest.mark.parametrize("number", ["96", "97", "98"])
def test_each_challenges_perturbation_is_deterministic_and_changes_the_answer(number):
    from runner.buffers import directions_of
    from runner.plan import reference_outputs

    challenge = load_challenge(find_challenge(number), torch.device("cpu"))
    cases = challenge.generate_functional_test()
    case = max(cases, key=lambda c: sum(v.numel() for v in c.values()   # the largest: every
                                        if isinstance(v, torch.Tensor)))  # input matters
    directions = directions_of(challenge.get_solve_signature())
    runs = []
    for index in (0, 0, 1):
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        challenge.perturb_inputs(args, case, run_generator(torch.device("cpu"), 1234, index))
        runs.append(args)
    for name in case:
        if isinstance(case[name], torch.Tensor):
            a, b = runs[0][name], runs[1][name]       # same nonce and run (an output left
            assert torch.equal(a, b) or (a.is_floating_point()    # uninitialized may hold NaN)
                                         and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)), name
    before = reference_outputs(challenge, case, directions)
    for args in (runs[0], runs[2]):
        after = reference_outputs(challenge, args, directions)
        changed = [n for n in after if not challenge.compare_output(n, after[n], before[n], case).passed]
        assert changed, "the perturbed inputs give an answer within tolerance of the old one"


# -- forged verdicts and reports, through the jailed child --------------------------------------

@pytest.mark.parametrize("entry, text", [
    ("forged_verdict.pytorch.py", "claiming the verdict 'accepted'"),
    ("forged_report.pytorch.py", "without reporting"),
    ("report_after_done.pytorch.py", "after 'done'"),
])
def test_forged_reports_are_rejected(tmp_path, entry, text):
    result = grade(96, staged(tmp_path, entry), "run")
    assert result.verdict == "rejected", (result.verdict, result.message, result.details[-2000:])
    assert protocol.INTERFERENCE in result.message and text in result.message, result.message


# -- times and remembered answers (timed on the host clock here, as the GPU path is) -------------

def test_an_honest_solution_is_timed_and_its_runs_checked(tmp_path):
    result = grade(MATMUL, CORPUS / "matmul" / "correct.pytorch.py", "submit", time_on_cpu=True)
    assert result.verdict == "accepted", (result.message, result.details[-2000:])
    perf = result.performance
    assert perf["timed"] and perf["checked_runs"] >= 3
    clock = perf["clock"]
    assert clock["calls"] >= 8 and clock["per_call_ms"] >= 0
    # the burst's two legs, on the grader's clock, add up to no more than the whole
    assert 0 < clock["to_done_ms"] and 0 < clock["probe_ms"]
    assert clock["to_done_ms"] + clock["probe_ms"] <= clock["seconds"] * 1e3


@pytest.mark.parametrize("entry", ["matmul/forged_timing_patch.pytorch.py",
                                   "matmul/forged_timing_fd_swap.pytorch.py"])
def test_a_forged_time_is_rejected_by_the_graders_clock(tmp_path, entry):
    result = grade(MATMUL, staged(tmp_path, entry), "submit", time_on_cpu=True)
    # the in-process tamper check may see the patch first, the grader's clock sees every
    # forger; a relay thread cut off by the child's exit ends in runtime_error instead
    assert result.verdict in ("rejected", "runtime_error"), (result.verdict, result.message)
    if result.verdict == "rejected":
        assert protocol.INTERFERENCE in result.message, result.message


@pytest.mark.parametrize("entry, text", [
    ("matmul/remembers_answers.pytorch.py", "inputs changed before that run"),
    ("matmul/skips_timed_calls.pytorch.py", "inputs changed before that run"),
])
def test_remembered_answers_and_skipped_calls_fail_the_checked_runs(tmp_path, entry, text):
    result = grade(MATMUL, staged(tmp_path, entry), "submit", time_on_cpu=True)
    assert result.verdict == "wrong_answer", (result.verdict, result.message)
    assert text in result.message, result.message


def test_a_time_faster_than_the_device_can_move_the_bytes_is_rejected(monkeypatch):
    from runner import devices
    from runner.grading import Grading
    from runner.performance import physics_problem
    from runner.plan import Plan

    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    case = challenge.generate_performance_test()
    grading = Grading(challenge, Plan(cases=[], expected=[], perf_case=case),
                      GradeOptions(action="submit"))
    monkeypatch.setattr(devices, "ceiling", lambda device: devices.Ceiling(3500.0, "test"))
    nbytes = challenge.bytes_moved(case)
    honest_ms = nbytes / 3500e9 * 1e3 * 1.02
    assert physics_problem(grading, honest_ms) == ""
    problem = physics_problem(grading, honest_ms / 1.5)
    assert "faster than the device can move them" in problem and "3,500 GB/s" in problem


@pytest.mark.parametrize("mode, drains", [("device-sync", True), ("events", False)])
def test_the_burst_drains_the_device_only_for_work_left_on_other_streams(mode, drains):
    """A solve whose work outlived the current stream in the timed runs (the timer's
    device-sync mode) gets the device drained before each input copy is reused in the burst,
    so that work never reads a rewritten copy; any other solve runs back to back."""
    from runner.grading import Grading
    from runner.plan import Plan

    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    grading = Grading(challenge, Plan(cases=[], expected=[], perf_copies=3),
                      GradeOptions(action="submit"))
    grading.claim = {"samples_ms": [0.05] * 10, "mode": mode}
    [command] = grading._burst()
    assert command["command"] == protocol.CMD_BURST
    assert command["sync_every"] == (3 if drains else 0)
    assert 16 <= command["calls"] <= protocol.MAX_BURST_CALLS


def test_the_burst_probe_fits_the_report_channels_line_limit():
    """The bytes of every call's outputs that come back after a burst travel as one line: the
    parent names as many positions as keep that line well under the channel's limit, for the
    longest burst and several outputs."""
    from runner.grading import Grading
    from runner.plan import Plan
    from runner.sandbox.parent import MAX_LINE_BYTES

    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    outputs = {f"out{k}": torch.zeros(1000) for k in range(3)}
    grading = Grading(challenge, Plan(cases=[], expected=[], perf_expected=outputs),
                      GradeOptions(action="submit"))
    calls = protocol.MAX_BURST_CALLS
    [command] = grading._on_burst_done({"calls": calls}, 0.0)
    assert command["command"] == protocol.CMD_PROBE and set(command["positions"]) == set(outputs)
    probed = sum(len(p) for p in command["positions"].values())
    assert probed >= 3 * 4
    assert calls * probed * 4 / 3 < MAX_LINE_BYTES / 2     # base64 of the bytes, one line


def test_the_read_probe_reads_every_word_once():
    """The kernel behind the measured ceiling and the case floors (runner/probe.py), here under
    Triton's interpreter: the XOR of its lanes is the XOR of every word, for a size that is no
    multiple of its tile and a grid smaller than the words need."""
    import numpy as np

    from runner import probe

    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("the interpreter runs on CPU tensors; the GPU suite measures the probe")
    src = torch.randint(-2**31, 2**31 - 1, (50_001,), dtype=torch.int32,
                        generator=torch.Generator().manual_seed(3))
    run = probe._triton_read(src, sms=1)
    run()
    sink = run.sink
    assert sink.numel() == 8 * 1024                       # sms * 8 programs, fewer than needed
    assert np.bitwise_xor.reduce(sink.numpy()) == np.bitwise_xor.reduce(src.numpy())
