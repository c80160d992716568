"""On the CPU path, PyTorch and Triton solutions written for a GPU (device="cuda", .cuda(),
torch.cuda.synchronize() inside solve) run on the CPU, in the jail, and the report says so once."""

from pathlib import Path

import pytest
import torch

from runner.catalog import find_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.languages.cpu_cuda import cuda_on_cpu, note_for

HERE = Path(__file__).parent
VECTOR_ADD = HERE / "judge" / "challenges" / "easy" / "1_vector_add"
LEETGPU_STYLE = HERE / "harness_solutions" / "leetgpu_style"
PLAIN = HERE / "judge" / "solutions" / "correct.pytorch.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: this machine has a GPU")
def test_without_the_mapping_torch_refuses_cuda_here():
    with pytest.raises((RuntimeError, AssertionError), match="CUDA"):
        torch.empty(4, device="cuda")
    with cuda_on_cpu(torch.device("cpu")):
        assert torch.empty(4, device="cuda").device.type == "cpu"
        assert torch.ones(2).cuda().device.type == "cpu"
        torch.cuda.synchronize()
    with pytest.raises((RuntimeError, AssertionError), match="CUDA"):
        torch.cuda.synchronize()                 # restored afterwards


@pytest.mark.parametrize("language", ["pytorch", "triton"])
def test_leetgpu_style_solutions_are_accepted_on_the_cpu_in_the_jail(language):
    solution = LEETGPU_STYLE / f"vector_add_cuda_names.{language}.py"
    options = GradeOptions(action="submit", device=torch.device("cpu"), isolate=True)
    result = grade_safely(find_challenge(str(VECTOR_ADD)), solution, language, options)
    assert result.verdict == "accepted", (result.verdict, result.message, result.details[-3000:])
    said = [n for n in result.notes if 'device="cuda"' in n]
    assert len(said) == 1 and "ran on the CPU" in said[0], result.notes


def test_the_note_is_only_for_solutions_that_name_cuda_on_the_cpu():
    named = LEETGPU_STYLE / "vector_add_cuda_names.pytorch.py"
    assert note_for(named, "pytorch", torch.device("cpu"))
    assert not note_for(PLAIN, "pytorch", torch.device("cpu"))
    assert not note_for(named, "pytorch", torch.device("cuda"))
    assert not note_for(named, "cuda", torch.device("cpu"))
