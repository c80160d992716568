"""The grader believes only what it checked or measured itself (runner.protocol, runner.grader.grade):
the message schema and order, verdicts the child may not claim, forged reports and times,
remembered answers and skipped work. The CPU-checkable cheats run here through the jailed
child; the GPU ones are in test_sandbox_corpus.py."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import torch

from runner import policy, protocol
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
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
    from runner.grader.plan import reference_outputs

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
    from runner.grader.conversation import Grading
    from runner.grader.performance import physics_problem
    from runner.grader.plan import Plan

    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    case = challenge.generate_performance_test()
    grading = Grading(challenge, Plan(cases=[], expected=[], perf_case=case),
                      GradeOptions(action="submit"))
    monkeypatch.setattr(devices, "ceiling", lambda device: devices.Ceiling(3500.0, "test"))
    nbytes = challenge.bytes_moved(case)
    honest_ms = nbytes / 3500e9 * 1e3 * 1.02
    evidence = grading.timing_evidence()
    assert physics_problem(evidence, honest_ms) == ""
    problem = physics_problem(evidence, honest_ms / 1.5)
    assert "faster than the device can move them" in problem and "3,500 GB/s" in problem


def _burst_grading(mode="events", sets=4000, copies=3, monkeypatch=None, null_s=1e-4,
                   median_ms=0.05):
    from runner.grader.conversation import Grading
    from runner.grader.plan import Plan

    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    grading = Grading(challenge, Plan(cases=[], expected=[], perf_copies=copies),
                      GradeOptions(action="submit", burst_s=1.0))
    grading.claim = {"samples_ms": [median_ms] * 10, "mode": mode, "burst_sets": sets}
    # the grader's own null burst, as if measured here (its loop is tested on its own)
    monkeypatch.setattr(grading, "_parent_null", lambda *a: (null_s, 1e-5))
    return grading


@pytest.mark.parametrize("mode, drains, isolate", [("device-sync", True, False),
                                                   ("events", False, False),
                                                   ("isolated", False, True)])
def test_the_burst_drains_the_device_only_for_work_left_on_other_streams(mode, drains, isolate,
                                                                         monkeypatch):
    """A solve whose work outlived the current stream in the timed runs (the timer's
    device-sync mode) gets the device drained before every rewrite of an input copy in the
    burst, so that work never reads a rewritten copy nor hides under the grader's own work;
    one whose work does not wait for the current stream at all (isolated) also before every
    call; any other solve runs back to back."""
    grading = _burst_grading(mode, monkeypatch=monkeypatch)
    [command] = grading._burst()
    assert command["command"] == protocol.CMD_BURST
    assert command["sync_every"] == (1 if drains else 0)
    assert command["isolate"] is isolate
    assert 1 <= command["calls"] <= policy.MAX_BURST_CALLS


def test_the_bursts_come_in_rounds_of_real_and_null_at_two_lengths(monkeypatch):
    """Every round has a real and a null burst at a short and a long length (in random order):
    the slope over the lengths drops the fixed costs, the null burst the rewrites and flushes."""
    grading = _burst_grading(monkeypatch=monkeypatch)
    first = grading._burst()[0]
    steps = [grading.bursts[0]] + grading.schedule
    assert len(steps) % 4 == 0 and len(steps) // 4 >= 3
    short, long_ = grading.burst_setup["lengths"]
    assert 1 <= short < long_ <= policy.MAX_BURST_CALLS and long_ >= 4 * short
    for r in range(len(steps) // 4):
        assert sorted((s["kind"], s["calls"]) for s in steps[4 * r:4 * r + 4]) == sorted(
            [("null", short), ("null", long_), ("real", short), ("real", long_)])
    assert first["null"] == (steps[0]["kind"] == "null")
    # a null burst's probe is not checked: the next burst follows at once
    if first["null"]:
        grading._on_burst_done({"calls": first["calls"]}, 1.0)
        positions = grading.positions
        values = {n: base64.b64encode(bytes(first["calls"] * len(p))).decode()
                  for n, p in positions.items()}
        [again] = grading._on_burst_probe({"values": values}, 2.0)
        assert again["command"] == protocol.CMD_BURST and grading.bursts[-1]["round"] == 0


def test_bursts_cut_short_by_the_output_sets_get_more_rounds(monkeypatch):
    """Large outputs (97's) leave few output sets: the long burst is as long as they allow, and
    there are more rounds so the median rests on as many calls."""
    free = _burst_grading(monkeypatch=monkeypatch)
    free._burst()
    capped = _burst_grading(sets=40, monkeypatch=monkeypatch)
    capped._burst()
    assert capped.burst_setup["lengths"] == [10, 40]
    assert len(capped.schedule) + 1 > len(free.schedule) + 1


def test_a_burst_of_another_length_than_asked_is_a_violation(monkeypatch):
    grading = _burst_grading(monkeypatch=monkeypatch)
    [command] = grading._burst()
    with pytest.raises(ProtocolViolation, match="calls where"):
        grading._on_burst_done({"calls": command["calls"] + 1}, 1.0)


def _rounds(fixed_s, o_s, s_s, lengths=(100, 400), null_extra_s=0.0, rounds=3):
    short, long_ = lengths
    return [{"real": {n: fixed_s * (1 + r) + n * (o_s + s_s) for n in lengths},
             "null": {n: 2 * fixed_s + n * (o_s + null_extra_s) for n in lengths}}
            for r in range(rounds)]


def test_the_clock_takes_the_slope_of_real_minus_null():
    """Fixed costs (the command, the cover, the probe's round trip: different in every burst)
    drop out of the slope, and the per-call rewrite and flush out of the difference: what is
    left is the solve's time, however small against them (97: 35 us under 660 us)."""
    from runner.grader.clock import clock_per_call

    found = clock_per_call(_rounds(fixed_s=0.025, o_s=660e-6, s_s=35e-6), parent_null_s=655e-6)
    assert found["per_call_s"] == pytest.approx(35e-6, rel=1e-6)
    assert found["null_slope_s"] == pytest.approx(660e-6) and not found["null_clipped"]
    # the estimate the clock used to subtract, 5% off, would have read twice the kernel
    assert (660e-6 * 1.05 - 660e-6) > 0.9 * 35e-6


def test_a_null_burst_made_slow_is_believed_only_up_to_the_graders_own():
    """The null burst runs in the untrusted process: one made slower (work of its own while the
    solve is not called) would make the solve look faster. It is believed up to NULL_SLACK
    above the same loop measured in the grader's process, so such a forger gains at most that."""
    from runner.grader.clock import clock_per_call
    from runner.policy import NULL_SLACK

    o, s = 300e-6, 100e-6
    found = clock_per_call(_rounds(0.01, o, s, null_extra_s=80e-6), parent_null_s=o)
    assert found["null_clipped"]
    assert found["per_call_s"] == pytest.approx(s - NULL_SLACK * o, rel=1e-6)
    with pytest.raises(ValueError):
        clock_per_call([{"real": {5: 1.0, 6: 1.1}, "null": {5: 1.0}}], o)


def test_real_bursts_faster_than_the_graders_own_null_are_not_corroborated(monkeypatch):
    """A child that skips the flush in its real bursts only (nothing checks a flush) would read
    the flush's time off the solve's: a real slope under the grader's own null burst cannot be
    an honest one, and the time is held, never corroborated."""
    from types import SimpleNamespace

    from runner import devices
    from runner.grader.clock import clock_per_call
    from runner.grader.performance import headline

    o, s, flush = 95e-6, 31e-6, 85e-6
    honest = clock_per_call(_rounds(0.01, o, s), parent_null_s=o)
    assert not honest["skipped_grader_work"]
    rounds = _rounds(0.01, o, s)
    for r in rounds:       # real bursts without the flush, null ones with it
        r["real"] = {n: t - n * flush for n, t in r["real"].items()}
    found = clock_per_call(rounds, parent_null_s=o)
    assert found["skipped_grader_work"] and found["per_call_s"] == 0.0
    monkeypatch.setattr(devices, "ceiling", lambda device: None)
    evidence = SimpleNamespace(claim={"samples_ms": [0.01] * 5, "host_us": 5.0},
                               perf_case=None, device=torch.device("cuda"),
                               clock={"per_call_ms": 0.0, "calls": 1000,
                                      "skipped_grader_work": True})
    summary = {}
    assert headline(evidence, summary) is None
    assert summary["clock"]["agrees"] is False and "faster than" in summary["notes"][0]


def test_the_burst_loop_rewrites_flushes_and_drains_in_order():
    """The one loop the child runs and the grader measures its null on: rewrite, flush, solve;
    drained before a rewrite every sync_every calls (work outliving the stream), or before the
    rewrite and before the solve of every call (work that does not wait for the stream)."""
    from runner.timing import burst_loop

    def trace(**kw):
        seen = []
        burst_loop(4, lambda j: seen.append(f"p{j}"), kw.pop("solve", lambda j: seen.append(f"s{j}")),
                   lambda: seen.append("f"), sync=lambda: seen.append("|"), **kw)
        return " ".join(seen)

    assert trace() == "p0 f s0 p1 f s1 p2 f s2 p3 f s3"
    assert trace(solve=None) == "p0 f p1 f p2 f p3 f"
    assert trace(sync_every=2) == "p0 f s0 p1 f s1 | p2 f s2 p3 f s3"
    assert trace(isolate=True) == "| p0 f | s0 | p1 f | s1 | p2 f | s2 | p3 f | s3"


@pytest.mark.parametrize("ratio, verdict, agrees", [(1.2, None, True), (1.3, None, False),
                                                    (2.9, None, False), (3.2, "rejected", False)])
def test_the_clock_bands(ratio, verdict, agrees, monkeypatch):
    """Within 1.25x the clock corroborates the median; above, the time is kept with a note and
    a leaderboard holds it; above 3x (on a GPU, with no host time to explain it) the median is
    contradicted and the grading rejected."""
    from types import SimpleNamespace

    from runner import devices
    from runner.grader.performance import headline

    monkeypatch.setattr(devices, "ceiling", lambda device: None)
    evidence = SimpleNamespace(claim={"samples_ms": [0.1] * 5, "host_us": 5.0},
                               perf_case=None, device=torch.device("cuda"),
                               clock={"per_call_ms": 0.1 * ratio, "calls": 1000})
    summary = {}
    problem = headline(evidence, summary)
    assert (problem is not None) == (verdict == "rejected"), problem
    assert summary["clock"]["agrees"] is agrees
    if not agrees and verdict is None:
        assert "holds it for review" in summary["notes"][0]


def test_the_leaderboard_holds_what_the_clock_does_not_corroborate_at_the_same_band():
    from runner.policy import CLOCK_BAND, CLOCK_HOLD, CLOCK_REJECT

    assert CLOCK_HOLD == 1 + CLOCK_BAND == 1.25 and CLOCK_REJECT == 3.0


def test_a_solve_that_does_not_wait_for_the_stream_is_told_why_its_time_includes_the_host():
    from runner.grader.performance import stream_note

    assert "non-blocking stream" in stream_note("isolated")
    assert "host time" in stream_note("isolated")
    assert stream_note("events") is None and stream_note(None) is None


def test_the_burst_probe_fits_the_report_channels_line_limit():
    """The bytes of every call's outputs that come back after a burst travel as one line: the
    parent names as many positions as keep that line well under the channel's limit, for the
    longest burst and several outputs."""
    from runner.grader.conversation import Grading
    from runner.grader.plan import Plan
    from runner.policy import MAX_LINE_BYTES

    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    outputs = {f"out{k}": torch.zeros(1000) for k in range(3)}
    grading = Grading(challenge, Plan(cases=[], expected=[], perf_expected=outputs),
                      GradeOptions(action="submit"))
    calls = policy.MAX_BURST_CALLS
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


def test_the_read_write_probe_reads_and_writes_exactly_its_share():
    """The case floor's second kernel (runner/probe.py), under Triton's interpreter: it reads
    the first n_read words (the XOR of its lanes), writes the first n_write words and nothing
    past them, whether it writes less than it reads or more."""
    import numpy as np

    from runner import probe

    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("the interpreter runs on CPU tensors; the GPU suite measures the probe")
    src = torch.randint(-2**31, 2**31 - 1, (30_001,), dtype=torch.int32,
                        generator=torch.Generator().manual_seed(4))
    for n_read, n_write in ((30_001, 5_003), (7_000, 30_001), (30_001, 0)):
        dst = torch.full((30_001,), 7, dtype=torch.int32)
        run = probe._triton_probe(src, dst, n_read, n_write, sms=1)
        run()
        assert np.bitwise_xor.reduce(run.sink.numpy()) == np.bitwise_xor.reduce(src[:n_read].numpy())
        idx = torch.arange(n_write, dtype=torch.int32)
        read = torch.zeros(n_write, dtype=torch.int32)
        read[:min(n_read, n_write)] = src[:min(n_read, n_write)]
        assert torch.equal(dst[:n_write], read ^ idx)
        assert (dst[n_write:] == 7).all()


def test_the_childs_null_burst_never_calls_solve_and_every_call_is_probed():
    """The child's side of a burst (runner.execute.PerfBench) on the CPU: a null burst does the
    rewrites without calling solve, a real one calls it once per call, each call writes its own
    output set, and the probe returns the bytes of every call asked for."""
    from runner.buffers import directions_of, prepare_call
    from runner.cases import copy_seed, performance_case
    from runner.execute import PerfBench

    device = torch.device("cpu")
    challenge = load_challenge(find_challenge(str(MATMUL)), device)
    directions = directions_of(challenge.get_solve_signature())
    cases = [performance_case(challenge, copy_seed(0, k)) for k in range(2)]
    initial = [{n: c[n].clone() for n, d in directions.items() if d != "in"} for c in cases]
    copies = [prepare_call(c, directions) for c in cases]
    calls = []

    def solve(args):
        calls.append(args)
        for name, d in directions.items():
            if d != "in":
                args[name].fill_(len(calls))

    bench = PerfBench(challenge, solve, copies, initial, directions, device,
                      retain_bytes=64 * 2**20, max_runs=32)
    sets = len(bench.sets)
    assert sets >= 16
    assert bench.burst(7, 12, 0, null=True) == 12 and calls == []
    assert bench.burst(7, 12, 0) == 12 and len(calls) == 12
    out = next(n for n, d in directions.items() if d != "in")
    values = bench.probe(12, {out: [0, 1, 2, 3]})
    got = torch.frombuffer(bytearray(base64.b64decode(values[out])), dtype=torch.uint8).view(12, 4)
    expected = torch.arange(1, 13, dtype=torch.float32).view(12, 1).expand(12, 1)
    assert torch.equal(got[:, :4].contiguous().view(torch.float32), expected)
