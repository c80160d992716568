"""The trust checks on a GPU (issue 13): forged times are rejected by the grader's clock,
cached answers fail the checked runs or are timed honestly, and the references' times stand.
Run on the device; skipped without a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from runner.catalog import find_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.languages import detect

pytestmark = pytest.mark.gpu

CORPUS = Path(__file__).parent / "corpus"
REFERENCE = Path(__file__).parent.parent / "challenges/medium/96_int8_kv_cache_attention/reference"


def stage(tmp_path: Path, name: str) -> Path:
    for helper in ("_channel.py", "_forgers.py", "_correct.py"):
        shutil.copy(CORPUS / helper, tmp_path / helper)
    shutil.copy(REFERENCE / "solution.triton.py", tmp_path / "_honest_triton.py")
    return Path(shutil.copy(CORPUS / name, tmp_path / name))


def submit(path: Path, **options):
    opts = GradeOptions(action="submit", device=torch.device("cuda"), **options)
    return grade_safely(find_challenge("96"), path, detect(path), opts)


HONEST = '''
import sys
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
'''


@pytest.mark.parametrize("name", ["forged_timing_patch.pytorch.py",
                                  "forged_timing_fd_swap.pytorch.py"])
def test_forged_times_are_rejected_or_never_better_than_real(tmp_path, name):
    result = submit(stage(tmp_path, name))
    if result.verdict == "accepted":    # the forgery did not reach the report: its real time
        honest_path = tmp_path / "honest.pytorch.py"
        honest_path.write_text(HONEST)
        honest = submit(honest_path)
        ratio = (result.performance["solution"]["median_ms"]
                 / honest.performance["solution"]["median_ms"])
        assert ratio > 0.8, (ratio, result.performance)
    else:
        assert result.verdict in ("rejected", "runtime_error"), (result.verdict, result.message)


@pytest.mark.parametrize("name, honest_flag", [
    ("fingerprint_cache.triton.py", "env"),
    ("pointer_prefix_cache.cu", "-DNO_CACHE"),
])
def test_cached_answers_are_never_faster_than_the_honest_work(tmp_path, monkeypatch, name,
                                                               honest_flag):
    path = stage(tmp_path, name)
    cheat = submit(path)
    if honest_flag == "env":     # the same file with its cache switched off
        plain = tmp_path / "plain.triton.py"
        plain.write_text(path.read_text().replace('CACHE = os.environ.get("NO_CACHE") is None',
                                                  "CACHE = False"))
        honest = submit(plain)
    else:
        honest = submit(path, nvcc_flags=[honest_flag])
    assert honest.verdict == "accepted", (honest.verdict, honest.message)
    assert cheat.verdict in ("accepted", "wrong_answer", "rejected"), (cheat.verdict, cheat.message)
    if cheat.verdict == "accepted":
        ratio = (cheat.performance["solution"]["median_ms"]
                 / honest.performance["solution"]["median_ms"])
        assert ratio > 0.8, (ratio, cheat.performance, honest.performance)
