"""Running the CLI in-process and capturing its JSON result."""

import json
import subprocess
import sys
from pathlib import Path

from runner.cli import main

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "tests" / "solutions"
REFERENCE_96 = REPO / "reference" / "int8_kv_cache_attention"
STARTERS_96 = REPO / "starter_code" / "int8_kv_cache_attention"


def grade_json(capsys, *argv):
    """Run ``run_challenge.py *argv --json`` in this process; returns (exit code, result, stderr)."""
    code = main([*map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def run_cli(*argv, cwd=REPO):
    """Run the real entry point in a subprocess."""
    return subprocess.run([sys.executable, str(REPO / "run_challenge.py"), *map(str, argv)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
