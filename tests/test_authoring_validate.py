"""``--action validate``: it passes on every challenge of this repository and on a small valid
fixture, and each check fails, with its message, on a deliberately broken copy of that fixture.

A broken fixture is a folder under ``tests/fixtures/authoring/broken/`` holding the files that
differ from the valid one (``good/easy/901_row_scale``) and a ``defect.json``: the check line
that must fail, a fragment of its message, files to remove, and edits to make in place
(``replace``: ``file``, ``old``, ``new``; a defect of a few lines needs no copy of the file).
Adding a defect is adding a folder.
"""

import json
import shutil
from pathlib import Path

import pytest

from runner.authoring.results import FAIL, PASS, SKIP
from runner.authoring.validate import CHECK_NAMES, validate
from runner.catalog import CHALLENGES_DIR, discover, find_challenge
from runner.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "authoring"
GOOD = FIXTURES / "good" / "easy" / "901_row_scale"
BROKEN = sorted(p for p in (FIXTURES / "broken").iterdir() if (p / "defect.json").is_file())
HAS_NVCC = shutil.which("nvcc") is not None
NEVER_FAILS = {"starter[other]"}   # only lists LeetGPU's starters this runner does not grade


def check_to_run(line_name: str) -> str:
    """The check that reports ``line_name`` (``reference[pytorch]`` comes from ``reference``)."""
    return line_name if line_name in CHECK_NAMES else line_name.split("[")[0]


def spec_of(defect: Path) -> dict:
    return json.loads((defect / "defect.json").read_text())


def broken_copy(defect: Path, tmp_path: Path) -> Path:
    """The valid fixture with the defect's files laid over it (and its removals made)."""
    target = tmp_path / "easy" / GOOD.name
    shutil.copytree(GOOD, target)
    for relative in spec_of(defect).get("remove", []):
        (target / relative).unlink()
    for source in defect.rglob("*"):
        if source.is_file() and source.name != "defect.json":
            destination = target / source.relative_to(defect)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    for edit in spec_of(defect).get("replace", []):
        path = target / edit["file"]
        text = path.read_text()
        assert text.count(edit["old"]) == 1, f"{defect.name}: {edit['old']!r} not found once"
        path.write_text(text.replace(edit["old"], edit["new"]))
    return target


def lines(report, name):
    return [c for c in report.checks if c.name == name]


@pytest.fixture(scope="module")
def good_report(device):
    return validate(find_challenge(str(GOOD)), device)


def test_valid_fixture_passes_every_check(good_report):
    failed = [f"{c.name}: {c.message}" for c in good_report.checks if c.status == FAIL]
    assert not failed
    passed = {c.name for c in good_report.checks if c.status == PASS}
    expected = set(CHECK_NAMES) - NEVER_FAILS - {"reference", "value-range"}   # no int8 input
    if not HAS_NVCC:
        expected.discard("starter[cuda]")
    assert expected <= passed
    assert {"reference[pytorch]", "reference[triton]"} <= passed


def test_cpu_lines_say_what_could_not_run(good_report, device):
    if device.type != "cpu":
        pytest.skip("about the CPU path")
    cupy = lines(good_report, "starter[cupy]")[0]
    assert "parses" in cupy.message and "GPU" in cupy.message
    if HAS_NVCC:
        assert "compiles" in lines(good_report, "starter[cuda]")[0].message


@pytest.mark.parametrize("challenge", discover(CHALLENGES_DIR), ids=lambda c: c.display)
def test_every_challenge_in_the_repository_validates(challenge, device):
    """Every check but the grading of reference solutions, which tests/test_reference_solutions.py
    covers (under Triton's interpreter it takes about a minute per challenge)."""
    report = validate(challenge, device, skip=["reference"])
    failed = [f"{c.name}: {c.message} (fix: {c.hint})" for c in report.checks if c.status == FAIL]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("defect", BROKEN, ids=lambda p: p.name)
def test_broken_fixture_fails_its_check_with_its_message(defect, tmp_path, device):
    spec = spec_of(defect)
    if "compile" in defect.name and not HAS_NVCC:
        pytest.skip("needs nvcc")
    folder = broken_copy(defect, tmp_path)
    report = validate(find_challenge(str(folder)), device, only=[check_to_run(spec["check"])])
    found = lines(report, spec["check"])
    assert found, f"no {spec['check']} line in:\n{report.render_text()}"
    assert found[0].status == FAIL, report.render_text()
    assert spec["message"] in found[0].message, found[0].message
    assert found[0].hint, "a failure must say how to fix it"
    assert not report.ok


def test_every_check_has_a_broken_fixture():
    covered = {check_to_run(spec_of(d)["check"]) for d in BROKEN}
    assert set(CHECK_NAMES) - NEVER_FAILS - covered == set()


def test_a_failed_prerequisite_skips_what_depends_on_it(tmp_path, device):
    folder = broken_copy(FIXTURES / "broken" / "import_error", tmp_path)
    report = validate(find_challenge(str(folder)), device)
    assert [c.status for c in report.checks if c.name == "load"] == [FAIL]
    others = [c for c in report.checks if c.name != "load"]
    assert others and all(c.status == SKIP for c in others)
    assert "needs load to pass" in lines(report, "class")[0].message


def test_cli_exit_codes_and_json(tmp_path, capsys):
    assert main([str(GOOD), "--action", "validate", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True and result["format"] == "repo"
    assert {c["name"] for c in result["checks"]} >= {"signature", "html-example"}

    folder = broken_copy(FIXTURES / "broken" / "signature_mismatch", tmp_path)
    assert main([str(folder), "--action", "validate", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  signature" in out and "fix:" in out and "FAILED:" in out
