"""Our reference solutions: every one of every challenge accepted on `submit` on the GPU; and
challenge 96's correct on a sweep of shapes (not just fast on the performance case): the CPU
runs PyTorch and Triton (under the interpreter) on small shapes, the GPU every language on the
full sweep of the issue."""

import itertools
import re

import pytest
import torch

from benchmarks.attention_common import challenge_96, load_solution, mismatches, random_case
from helpers import REFERENCE_96, REPO, grade_json
from runner.catalog import challenge_info

REFERENCES = ["solution.pytorch.py", "solution.triton.py", "solution.cupy.py", "solution.cu"]
CPU_REFERENCES = ["solution.pytorch.py", "solution.triton.py"]

SWEEP = list(itertools.product([1, 8, 32, 64], [1, 7, 128, 4097, 32768], [8, 64, 128, 256]))
CPU_SWEEP = [(1, 1, 8), (3, 7, 24), (2, 130, 64), (1, 600, 256), (5, 33, 40)]


def check_sweep(name, shapes, device):
    challenge = challenge_96(device)
    solve_call = load_solution(name, challenge, device)
    failures = []
    for i, shape in enumerate(shapes):
        case = random_case(*shape, device, seed=1000 + i)
        solve_call(case)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wrong = mismatches(challenge, case)
        if wrong:
            failures.append(f"{shape}: {wrong} of {case['output'].numel()} outputs wrong")
        del case
    assert not failures, f"{name} is wrong on shapes (heads, seq_len, head_dim): {failures}"


def test_cuda_and_cupy_share_the_kernel_text():
    pattern = re.compile(r"// ---- BEGIN KERNELS ----\n(.*?)// ---- END KERNELS ----", re.S)
    cu = pattern.search((REFERENCE_96 / "solution.cu").read_text()).group(1)
    cupy = pattern.search((REFERENCE_96 / "solution.cupy.py").read_text()).group(1)
    assert cu == cupy, "solution.cu and solution.cupy.py kernel sections differ; copy one to the other"


@pytest.mark.parametrize("name", CPU_REFERENCES)
def test_python_references_are_correct_on_small_shapes(name):
    check_sweep(name, CPU_SWEEP, torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", REFERENCES)
def test_references_are_correct_on_the_sweep(name):
    check_sweep(name, SWEEP, torch.device("cuda"))


ALL_REFERENCES = sorted(REPO.glob("challenges/*/*/reference/solution.*"))


def slug_of(path):
    """The slug of the challenge whose ``reference/`` holds ``path``."""
    return challenge_info(path.parent.parent).slug


@pytest.mark.gpu
@pytest.mark.parametrize("path", ALL_REFERENCES, ids=lambda p: f"{slug_of(p)}/{p.name}")
def test_every_reference_is_accepted_on_submit(capsys, path):
    """Every reference solution of every challenge (its folder's reference/), graded as a user
    submits it."""
    code, result, _ = grade_json(capsys, slug_of(path), "--solution", path,
                                 "--action", "submit", "--device", "cuda")
    assert code == 0 and result["verdict"] == "accepted", (result["message"], result["details"])
    perf = result["performance"]
    print(f"\n{slug_of(path)}/{path.name}: {perf['solution']['median_ms'] * 1e3:.1f} us, "
          f"{perf.get('gbps', 0):.0f} GB/s ({100 * perf.get('bandwidth_fraction', 0):.0f}% of "
          f"peak); reference {perf['reference']['median_ms'] * 1e3:.1f} us")
