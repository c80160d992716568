"""Running the CLI in-process and capturing its JSON result."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner.cli import main
from runner.errors import CompiledOnly
from runner.languages import cuda

REPO = Path(__file__).resolve().parent.parent
# solutions that test the harness (most in 96's signature; see the folder's README)
HARNESS_SOLUTIONS = REPO / "tests" / "harness_solutions"
CHALLENGE_96 = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention"
REFERENCE_96 = CHALLENGE_96 / "reference"
STARTERS_96 = CHALLENGE_96 / "starter"
WRONG_96 = CHALLENGE_96 / "solutions" / "wrong"


def grade_json(capsys, *argv):
    """Run ``run_challenge.py *argv --json`` in this process; returns (exit code, result, stderr)."""
    code = main([*map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def run_cli(*argv, cwd=REPO):
    """Run the real entry point in a subprocess."""
    return subprocess.run([sys.executable, str(REPO / "run_challenge.py"), *map(str, argv)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def assert_compiles_without_a_gpu(path: Path, challenge, cache_dir: Path, monkeypatch) -> None:
    """A .cu file builds with nvcc and, with no GPU to run on, gets the `compiled` verdict."""
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(cache_dir))
    with pytest.raises(CompiledOnly) as info:
        cuda.load(path, challenge, torch.device("cpu"))
    assert info.value.verdict == "compiled"


def assert_python_files_take_the_signature(challenge, starters: Path, reference: Path) -> None:
    """Every Python starter and reference defines `solve` with the signature's parameters, and
    there is a starter for every language."""
    names = list(challenge.get_solve_signature())
    for path in [*starters.glob("starter.*.py"), *reference.glob("solution.*.py")]:
        tree = ast.parse(path.read_text())
        solve = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "solve"]
        assert solve and [a.arg for a in solve[0].args.args] == names, path.name
    assert {p.name for p in starters.iterdir()} >= {"starter.cu", "starter.triton.py",
                                                    "starter.cupy.py", "starter.pytorch.py"}
