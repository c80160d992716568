"""CuPy solutions on a machine that cannot run them: a clear message, never a traceback."""

import ast

import pytest
import torch

from helpers import HARNESS_SOLUTIONS, STARTERS_96, WRONG_96, grade_json
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.errors import EnvironmentNotSupported
from runner.languages import cupy as cupy_language

NEEDS = "CuPy solutions need an NVIDIA GPU and the cupy extra: pip install -e '.[cupy]'"


@pytest.fixture(scope="module")
def challenge():
    return load_challenge(find_challenge("96"), torch.device("cpu"))


def test_cupy_on_the_cpu_gets_the_needs_a_gpu_message(challenge):
    with pytest.raises(EnvironmentNotSupported) as info:
        cupy_language.load(STARTERS_96 / "starter.cupy.py", challenge, torch.device("cpu"))
    assert info.value.message.startswith(NEEDS)
    assert info.value.details == ""


def test_cupy_not_installed_gets_the_same_message(challenge, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)   # `import cupy` now fails
    with pytest.raises(EnvironmentNotSupported) as info:
        cupy_language.load(STARTERS_96 / "starter.cupy.py", challenge, torch.device("cuda"))
    assert info.value.message.startswith(NEEDS) and "importing cupy failed" in info.value.message
    assert "Traceback" not in info.value.message + info.value.details


def test_cupy_through_the_cli_without_a_gpu(capsys):
    code, result, _ = grade_json(capsys, "96", "--solution", HARNESS_SOLUTIONS / "cupy_correct.cupy.py",
                                 "--device", "cpu")
    assert code == 1 and result["verdict"] == "runtime_error"
    assert result["message"].startswith(NEEDS)
    assert "Traceback" not in result["details"] and result["tests"] == []


@pytest.mark.parametrize("path", [STARTERS_96 / "starter.cupy.py", *sorted(HARNESS_SOLUTIONS.glob("cupy_*.cupy.py")),
                                  WRONG_96 / "swapped_scales.cupy.py"])
def test_cupy_files_define_solve_with_the_signature(path, challenge):
    tree = ast.parse(path.read_text(), str(path))
    solve = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "solve"]
    assert solve, f"{path.name} defines no solve"
    assert [a.arg for a in solve[0].args.args] == list(challenge.get_solve_signature())
