"""What a jailed solution sees of its challenge's folder: only what loading the challenge needs
(runner.catalog.loading_files). The folder also holds our reference solutions, its known-bad
solutions, its starters and its tests; a submission reads none of them, in a cold jail, a jail
parked for this challenge (the CLI's) or one parked before its job was known (the judge's)."""

import pytest

from helpers import CHALLENGE_96, REFERENCE_96
from runner.catalog import challenge_info, loading_files
from runner.grader.grade import grade
from runner.grader.options import GradeOptions
from runner.sandbox import jail, warm
from runner.sandbox.limits import Limits
from runner.sandbox.parent import jail_paths

INSIDE = "/challenge/medium/96_int8_kv_cache_attention"
HIDDEN = ["reference/solution.pytorch.py", "solutions/wrong/no_max.pytorch.py",
          "starter/starter.pytorch.py", "tests/test_challenge_96.py", "challenge.html"]

# prepended to 96's reference: the grading is accepted only if nothing hidden could be read
PROBE = f"""
import os
_shown = sorted(os.listdir({INSIDE!r}))
assert _shown == ['challenge.py'], 'the jail shows ' + repr(_shown)
for _hidden in {HIDDEN!r} + [{str(REFERENCE_96 / "solution.pytorch.py")!r}]:
    try:
        open(_hidden if _hidden.startswith('/') else {INSIDE!r} + '/' + _hidden).read()
    except OSError:
        continue
    raise SystemExit('a jailed solution read ' + _hidden)
"""


def test_loading_files_are_the_modules_beside_challenge_py_but_no_tests(tmp_path):
    for name in ("challenge.py", "helper.py", "challenge.html", "test_it.py", "it_test.py",
                 "conftest.py"):
        (tmp_path / name).write_text("")
    for folder in ("reference", "starter", "solutions", "tests"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "solution.py").write_text("")
    assert [p.name for p in loading_files(tmp_path)] == ["challenge.py", "helper.py"]


def test_the_jail_binds_the_challenges_files_not_its_folder(tmp_path):
    job, mapped = jail_paths({"challenge_path": str(CHALLENGE_96),
                              "solution_path": str(tmp_path / "solution.pytorch.py")})
    assert job["challenge_path"] == INSIDE
    assert mapped == {CHALLENGE_96 / "challenge.py": f"{INSIDE}/challenge.py",
                      tmp_path: "/submission"}


@pytest.mark.skipif(not jail.probe()[0], reason="no bubblewrap jail here")
@pytest.mark.parametrize("how", ["cold", "parked for it", "parked before the job"])
def test_a_jailed_solution_cannot_read_the_references_or_the_wrong_solutions(tmp_path, how):
    path = tmp_path / "solution.pytorch.py"
    path.write_text(PROBE + (REFERENCE_96 / "solution.pytorch.py").read_text())
    options = GradeOptions(action="run", warm_start=how == "parked for it")
    if how == "parked before the job":
        options.parked = warm.ParkedJail.start("cpu", Limits())
    result = grade(challenge_info(CHALLENGE_96), path, "pytorch", options)
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
