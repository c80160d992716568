"""Bad solutions, each graded in the sandbox: its verdict and message, and then a correct
solution graded right after by the same (parent) process, which must still be accepted."""

import shutil
import socket
from pathlib import Path

from dataclasses import replace

import pytest
import torch

from runner.catalog import find_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.sandbox.limits import Limits

CORPUS = Path(__file__).parent / "corpus"
CORRECT = (Path(__file__).parent.parent / "challenges/medium/96_int8_kv_cache_attention/reference"
           / "solution.pytorch.py")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# file, action, verdict, text the message must contain, limits
CPU_CASES = [
    ("nan_output.pytorch.py", "run", "wrong_answer", "got nan", {}),
    ("os_exit.pytorch.py", "run", "runtime_error", "exited with code 0 (while running example", {}),
    ("sys_exit.pytorch.py", "run", "runtime_error", "called sys.exit(3)", {}),
    ("segfault.pytorch.py", "run", "runtime_error", "killed by SIGSEGV", {}),
    ("abort.pytorch.py", "run", "runtime_error", "killed by SIGABRT", {}),
    ("python_hang.pytorch.py", "run", "time_limit_exceeded", "within the limit of 8 s",
     {"timeout_s": 8}),
    ("huge_host_allocation.pytorch.py", "run", "memory_limit_exceeded", "1.0 GiB of host memory",
     {"host_memory_bytes": 2**30}),
    ("cached_by_pointer.pytorch.py", "submit", "wrong_answer", "", {}),
    ("storage_swap.pytorch.py", "run", "wrong_answer", "got nan", {}),
    ("forged_report.pytorch.py", "run", "rejected", "without reporting", {}),
    ("reads_expected_via_gc.pytorch.py", "run", "wrong_answer", "differ by more than", {}),
]

GPU_CASES = [
    ("illegal_address.triton.py", "run", "runtime_error", "illegal memory access", {}),
    ("gpu_hang.triton.py", "run", "time_limit_exceeded", "never ends", {"timeout_s": 20}),
    ("gpu_out_of_memory.pytorch.py", "run", "memory_limit_exceeded", "out of memory", {}),
    ("timer_patch.pytorch.py", "submit", "rejected", "functions were changed", {}),
]


def grade(path: Path, action: str = "run", **limits):
    options = GradeOptions(action=action, device=DEVICE, time_budget_s=0.5)
    return grade_safely(find_challenge("96"), path, _language(path),
                        replace(options, limits=Limits(**limits)))


def _language(path: Path) -> str:
    from runner.languages import detect
    return detect(path)


def staged(tmp_path: Path, name: str) -> Path:
    """A copy of the corpus entry (and the helper it imports) in a private folder."""
    for helper in ("_correct.py", "_channel.py", "_forgers.py"):
        shutil.copy(CORPUS / helper, tmp_path / helper)
    return Path(shutil.copy(CORPUS / name, tmp_path / name))


def assert_verdict(result, verdict: str, text: str) -> None:
    assert result.verdict == verdict, (result.verdict, result.message, result.details[-2000:])
    assert text in result.message, result.message


def assert_next_grading_is_clean() -> None:
    result = grade(CORRECT)
    assert result.verdict == "accepted", (result.verdict, result.message, result.details[-2000:])


@pytest.mark.parametrize("name, action, verdict, text, limits", CPU_CASES,
                         ids=[c[0] for c in CPU_CASES])
def test_bad_solution_gets_its_verdict_and_the_next_grading_is_clean(tmp_path, name, action,
                                                                       verdict, text, limits):
    result = grade(staged(tmp_path, name), action, **limits)
    assert_verdict(result, verdict, text)
    assert_next_grading_is_clean()


@pytest.mark.gpu
@pytest.mark.parametrize("name, action, verdict, text, limits", GPU_CASES,
                         ids=[c[0] for c in GPU_CASES])
def test_bad_gpu_solution_gets_its_verdict_and_the_next_grading_is_clean(tmp_path, name, action,
                                                                           verdict, text, limits):
    result = grade(staged(tmp_path, name), action, **limits)
    assert_verdict(result, verdict, text)
    assert_next_grading_is_clean()


@pytest.mark.gpu
def test_work_left_on_a_private_stream_is_waited_for_and_timed(tmp_path):
    result = grade(staged(tmp_path, "private_stream.pytorch.py"), "submit")
    assert result.verdict == "accepted", result.message
    assert result.performance["solution"]["mode"] == "device-sync"


@pytest.mark.gpu
def test_a_kernel_on_a_non_blocking_stream_that_never_waits_is_accepted_and_billed(tmp_path):
    """Issue 25: a CUDA solve that launches on a non-blocking stream of its own and returns
    without waiting is correct, but its kernel neither waits for the grader's rewrite of the
    inputs nor shows between the current stream's events. It is detected before the timed runs
    and timed isolated (the device drained before and after each call, in the burst too): it is
    accepted, its median includes the kernel (that of the same kernel on the current stream),
    and the report says why its time includes the host."""
    result = grade(staged(tmp_path, "nonblocking_stream.cu"), "submit")
    assert result.verdict == "accepted", (result.message, result.details[-2000:])
    perf = result.performance
    assert perf["solution"]["mode"] == "isolated"
    assert any("non-blocking stream" in note for note in perf.get("notes", [])), perf
    plain = grade(Path(__file__).parent / "harness_solutions" / "cuda_correct.cu", "submit")
    assert plain.performance["solution"]["mode"] == "events"
    assert perf["solution"]["median_ms"] >= 0.9 * plain.performance["solution"]["median_ms"]
    assert perf["clock"]["agrees"], perf["clock"]


def test_stdout_flood_is_truncated_with_a_note(tmp_path):
    result = grade(staged(tmp_path, "stdout_flood.pytorch.py"), output_bytes=10_000)
    assert result.verdict == "accepted", result.message
    assert "stdout truncated" in result.logs
    assert len(result.logs) < 12_000


def test_no_network_inside_the_sandbox(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        path = staged(tmp_path, "network_probe.pytorch.py")
        (tmp_path / "network_probe.port").write_text(str(server.getsockname()[1]))
        result = grade(path)
    finally:
        server.close()
    if any("network not isolated" in note for note in result.notes):
        pytest.skip(f"this OS does not let the sandbox isolate the network: {result.notes}")
    assert result.verdict == "accepted", (result.message, result.details)


def test_the_graders_environment_is_not_passed_on(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_DB_SECRET", "hunter2")
    result = grade(staged(tmp_path, "environment_probe.pytorch.py"))
    assert result.verdict == "accepted", (result.message, result.details)


def test_the_child_never_holds_expected_outputs():
    """The submission side is given no reference outputs: its job names only inputs."""
    from runner.protocol import Job
    assert not any("expect" in name for name in Job.__dataclass_fields__)
