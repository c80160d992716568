"""Commands that only look things up answer at once: they never import torch (seconds on a
laptop). Checked by what is imported, not by the clock, so it holds on a loaded machine."""

import subprocess
import sys

import pytest

from helpers import REPO


def imported_modules(*argv):
    """(exit code, stdout, the top-level modules imported) of ``run_challenge.py *argv``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "run_challenge.py"),
                           *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name.split(".")[0])
    return proc.returncode, proc.stdout, modules


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["--action", "list"], 0),
    (["--action", "list", "--json"], 0),
    (["--bogus-flag"], 2),
    (["97_int8_kv_cache_atention"], 2),                          # a mistyped challenge
    (["96", "--solution", "nowhere/solution.triton.py"], 2),     # a missing file
    (["96", "--language", "fortran"], 2),
    (["serve", "--help"], 0),
])
def test_lookups_and_usage_errors_do_not_import_torch(argv, code):
    returncode, _, modules = imported_modules(*argv)
    assert returncode == code
    assert "runner" in modules           # the measurement itself works
    assert "torch" not in modules and "numpy" not in modules, sorted(modules)


def test_grading_does_import_torch():
    returncode, _, modules = imported_modules(
        "96", "--solution",
        "challenges/medium/96_int8_kv_cache_attention/reference/solution.pytorch.py",
        "--no-sandbox")
    assert returncode == 0 and "torch" in modules


def test_no_runner_module_imports_triton_at_import():
    """Importing triton fixes, for the whole process, whether its kernels run under the
    interpreter; only the grading decides that (runner.languages.triton.prepare), so no module
    of the runner may import triton when it is imported."""
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO / "runner").rglob("*.py"))
    check = ("import importlib, sys\n"
             f"for m in {modules!r}:\n"
             "    importlib.import_module(m)\n"
             "print('triton' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
