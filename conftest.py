"""The test suite's shared setup, for both trees it lives in: ``tests/`` (the harness) and each
challenge folder's ``tests/`` (``challenges/<difficulty>/<number>_<slug>/tests/``). Kept at the
repository's root so that pytest loads it for either, whichever paths a run names: the markers
of the quick and slow runs, the fixtures, and ``tests/`` on ``sys.path`` for ``helpers``."""

import os
import sys
from pathlib import Path

import pytest

# before numpy loads (torch loads it): Triton's CPU interpreter does many small numpy dots, which
# OpenBLAS threads slow down a hundredfold on a busy machine
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))     # helpers.py, cuda_emulation.py
os.environ.setdefault("TRITON_INTERPRET", "0" if torch.cuda.is_available() else "1")

HAS_GPU = torch.cuda.is_available()


# End-to-end cases that take long on a CPU (whole submissions, Triton's interpreter on large
# cases, nvcc builds, sandboxed corpus runs, real judges with their workers, the docs' commands)
# by node id prefix, besides those marked @pytest.mark.slow where they are written: kept in one
# place so that the quick run's content is decided (and measured) together. `python -m pytest -q`
# leaves them out (addopts in pyproject.toml); `-m slow` runs them; .ci/run runs both.
C97 = "challenges/medium/97_int8_kv_cache_quantize/tests/test_challenge_97.py"
C98 = "challenges/hard/98_paged_int8_decode_attention/tests/test_challenge_98.py"
C98_TRITON = "challenges/hard/98_paged_int8_decode_attention/tests/test_challenge_98_triton.py"
SLOW = (
    "tests/judge/test_judge_e2e.py",
    "tests/judge/test_judge_faults.py",
    "tests/judge/test_judge_fleet.py",
    "tests/judge/test_judge_native_hangs.py",
    "tests/judge/test_judge_workers_honest.py",
    "tests/test_sandbox_corpus.py",
    "tests/test_sandbox_native_hangs.py::test_a_native_hang_ends",
    "tests/test_sandbox_native_hangs.py::test_a_grandchild_left_behind",
    "tests/test_sandbox_native_hangs.py::test_a_child_not_reaped",
    "tests/test_sandbox_native_hangs.py::test_fifos_planted",
    "tests/test_doc_commands.py::test_each_command_of_the_docs_runs",
    C98_TRITON + "::test_the_kernel_compiles_for_sm90",
    C98_TRITON + "::test_precision_against_float64",
    C98_TRITON + "::test_tile_settings_are_correct",
    C98 + "::test_references_are_accepted_on_run",
    C98 + "::test_cuda_files_compile",
    C98 + "::test_generators_are_deterministic",
    C98 + "::test_cuda_reference_logic_on_the_cpu",
    C98 + "::test_reading_stale_rows",
    C97 + "::test_pytorch_reference_is_accepted_on_submit",
    C97 + "::test_triton_reference_is_accepted_on_run",
    C97 + "::test_checker_on_the_performance_case",
    C97 + "::test_cuda_files_compile",
    C97 + "::test_cuda_reference_logic_on_the_cpu",
    C97 + "::test_wrong_solutions_are_rejected",
    "tests/test_authoring_validate.py::test_every_challenge_in_the_repository_validates",
    "tests/test_compat_leetgpu.py::test_solutions_are_accepted",
    "tests/test_compat_leetgpu.py::test_validate_passes_in_leetgpu_format",
    "tests/test_cli.py::test_wrong_solutions_are_rejected_with_a_useful_message[swapped",
    "tests/test_cli.py::test_wrong_solutions_are_rejected_with_a_useful_message[first_head",
    "tests/test_cli.py::test_wrong_solutions_are_rejected_with_a_useful_message[writes",
    "tests/test_cli.py::test_wrong_solutions_are_rejected_with_a_useful_message[first_value_row",
    "tests/test_cli.py::test_answer_cached_by_shape_fails_on_fresh_inputs",
    "tests/test_cli.py::test_challenge_by_number_slug_and_path",
    "tests/test_cuda_build.py::test_second_build_of_the_same_file_does_not_call_nvcc",
    "tests/test_cuda_build.py::test_link_error_for_an_undefined_function",
    "tests/test_cuda_build.py::test_long_compiler_output_is_bounded",
    "tests/test_cuda_build.py::test_user_flags_reach_nvcc",
    "tests/test_cuda_build.py::test_nvcc_timeout_is_a_compile_error",
    "tests/test_cuda_build.py::test_elf_reader_finds_exported_functions",
    "tests/test_cuda_build.py::test_shipped_cuda_files_compile",
    "tests/test_cuda_build.py::test_cli_compile_error_exits_one",
    "tests/test_cuda_build.py::test_cli_reports_compiled_and_exits_zero",
    "tests/test_cli.py::test_wrong_solutions_are_rejected_with_a_useful_message[out_of",
    "tests/test_starters.py::test_the_cuda_starter_compiles",
    "tests/test_interrupt.py::test_ctrl_c_prints_interrupted_exits_130_and_cleans_up[False]",
    "tests/judge/test_escape.py::test_each_escape_fails_through_the_cli",
    "tests/judge/test_escape.py::test_every_escape_fails_through_serve",
    "tests/test_trust.py::test_an_honest_solution_is_timed",
    "tests/test_trust.py::test_a_forged_time_is_rejected",
    "tests/test_trust.py::test_remembered_answers_and_skipped_calls",
)


@pytest.hookimpl(tryfirst=True)       # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(slow)
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if HAS_GPU else "cpu")


class HeldKills(list):
    """The (pid, group) of every SIGKILL held back; ``release()`` sends them for real."""

    def __init__(self, real_send, restore):
        super().__init__()
        self._real_send, self._restore = real_send, restore

    def release(self) -> None:
        import signal

        self._restore()
        while self:
            pid, group = self.pop()
            self._real_send(pid, signal.SIGKILL, group)


@pytest.fixture
def held_sigkills(monkeypatch):
    """SIGKILLs sent through runner.procs are held back, as when the GPU driver takes long to
    tear a killed process's context down; released at the latest when the test ends."""
    import signal

    from runner import procs

    real_send = procs._send
    held = HeldKills(real_send, lambda: monkeypatch.setattr(procs, "_send", real_send))

    def send_all_but_the_kill(pid, sig, group=False):
        if sig == signal.SIGKILL:
            held.append((pid, group))
            return True
        return real_send(pid, sig, group)

    monkeypatch.setattr(procs, "_send", send_all_but_the_kill)
    yield held
    held.release()
