"""runner/environment.py is the one module that reads the process environment: checked from
the source, and its variables' values read when asked."""

from __future__ import annotations

import ast
from pathlib import Path

from runner import environment

RUNNER = Path(__file__).resolve().parent.parent / "runner"


def _reads_of_the_environment(tree: ast.AST):
    """The lines where ``os.environ`` or ``os.getenv`` is read (a store into os.environ, or
    its ``setdefault``, writes it: allowed)."""
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "getenv":
            yield node.lineno
        if not (isinstance(node, ast.Attribute) and node.attr == "environ"):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store):
            continue
        if isinstance(parent, ast.Attribute) and parent.attr == "setdefault":
            continue
        yield node.lineno


def test_only_the_environment_module_reads_the_environment():
    found = {}
    for path in sorted(RUNNER.rglob("*.py")):
        if path == RUNNER / "environment.py":
            continue
        lines = list(_reads_of_the_environment(ast.parse(path.read_text(encoding="utf-8"))))
        if lines:
            found[str(path.relative_to(RUNNER.parent))] = lines
    assert not found, f"read the environment through runner.environment instead: {found}"


def test_the_check_sees_a_read():
    tree = ast.parse("import os\nx = os.environ.get('A')\nos.environ['B'] = '1'\n"
                     "os.environ.setdefault('C', '1')\ny = os.getenv('D')\n")
    assert sorted(_reads_of_the_environment(tree)) == [2, 5]


def test_every_variable_is_documented_and_named_once():
    names = [v.name for v in environment.VARIABLES]
    assert len(names) == len(set(names)) and "CHALLENGES_PATH" in names
    assert all(v.meaning and v.default for v in environment.VARIABLES)


def test_values_are_read_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADER_JOBS_DIR", str(tmp_path))
    assert environment.jobs_root() == tmp_path
    monkeypatch.setenv("CHALLENGES_PATH", f" {tmp_path} ::")
    assert environment.challenge_paths() == [str(tmp_path)]
    monkeypatch.setenv("GRADER_WARM_START", "0")
    assert not environment.warm_start()
    monkeypatch.delenv("JUDGE_TOKEN", raising=False)
    monkeypatch.setenv("SERVICE_TOKEN", "t" * 20)
    assert environment.client_token() == "t" * 20
