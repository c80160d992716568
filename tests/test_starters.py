"""Every challenge has a starter per language with the skeleton a learner fills in: for Triton a
`@triton.jit` kernel and its launch from `solve`, for CUDA and CuPy a `__global__` kernel and
its launch; each runs (or, for CUDA without a GPU, compiles) and fails only by its answer."""

import ast
import re
import shutil

import pytest

from helpers import grade_json
from runner.catalog import CHALLENGES_DIR, discover, starter_files

CHALLENGES = [info for info in discover(CHALLENGES_DIR)]
IDS = [info.display for info in CHALLENGES]


def kernels_launched_in_solve(source: str):
    """(names of @triton.jit functions, names launched as `kernel[grid](...)` inside solve)."""
    tree = ast.parse(source)
    jitted = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)
              and any(ast.unparse(d) in ("triton.jit", "jit") for d in f.decorator_list)}
    solve = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "solve")
    launched = {node.func.value.id for node in ast.walk(solve)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript)
                and isinstance(node.func.value, ast.Name)}
    return jitted, launched


@pytest.mark.parametrize("info", CHALLENGES, ids=IDS)
def test_every_language_has_a_starter(info):
    assert set(starter_files(info)) == {"cuda", "triton", "cupy", "pytorch"}


@pytest.mark.parametrize("info", CHALLENGES, ids=IDS)
def test_the_triton_starter_has_a_kernel_and_its_launch(info):
    jitted, launched = kernels_launched_in_solve(starter_files(info)["triton"].read_text())
    assert jitted, "no @triton.jit kernel"
    assert jitted <= launched, f"solve does not launch {jitted - launched}"


@pytest.mark.parametrize("info", CHALLENGES, ids=IDS)
def test_the_cuda_and_cupy_starters_have_a_kernel_and_its_launch(info):
    cuda = starter_files(info)["cuda"].read_text()
    kernel = re.search(r"__global__\s+void\s+(\w+)", cuda)
    assert kernel and re.search(rf"\b{kernel.group(1)}\s*<<<", cuda), "no kernel launched"
    cupy = starter_files(info)["cupy"].read_text()
    kernel = re.search(r"(\w+)\s*=\s*cp\.RawKernel\(", cupy)
    assert kernel, "no cp.RawKernel"
    solve = cupy[cupy.index("def solve"):]
    assert re.search(rf"\b{kernel.group(1)}\(", solve), "solve does not launch the kernel"


@pytest.mark.parametrize("language", ["triton", "pytorch"])
@pytest.mark.parametrize("info", CHALLENGES, ids=IDS)
def test_a_starter_runs_and_fails_only_by_its_answer(capsys, info, language):
    code, result, _ = grade_json(capsys, info.display, "--solution",
                                 starter_files(info)[language], "--no-sandbox")
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("info", CHALLENGES, ids=IDS)
def test_the_cuda_starter_compiles(info, tmp_path, monkeypatch):
    import torch

    from helpers import assert_compiles_without_a_gpu
    from runner.loading import load_challenge
    challenge = load_challenge(info, torch.device("cpu"))
    assert_compiles_without_a_gpu(starter_files(info)["cuda"], challenge, tmp_path, monkeypatch)
