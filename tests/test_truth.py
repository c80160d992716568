"""Accuracy against the truth, not the reference's rounding (runner/grader/truth.py): where a
challenge's float32 reference misses its own tolerance against float64, an output at least as
close to the float64 answer as the reference is passes, and the report says the rule was used;
an output further from it than the reference still fails."""

from pathlib import Path

import pytest
import torch

from runner.catalog import find_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
from runner.grader.truth import RULE

HERE = Path(__file__).parent / "fixtures" / "accuracy"
VARIANCE = HERE / "easy" / "1_row_variance"
SOLUTIONS = HERE / "solutions"


def _submit(name: str):
    options = GradeOptions(action="submit", device=torch.device("cpu"), isolate=False)
    return grade_safely(find_challenge(str(VARIANCE)), SOLUTIONS / name, "pytorch", options)


def test_the_fixtures_reference_misses_its_tolerance_and_the_solution_is_closer():
    from runner.authoring.float64 import ComputeInFloat64  # noqa: F401 - the same mode
    from runner.buffers import directions_of
    from runner.loading import load_challenge
    from runner.grader.plan import reference_outputs
    from runner.grader.truth import excess, float64_outputs

    challenge = load_challenge(find_challenge(str(VARIANCE)), torch.device("cpu"))
    case = challenge.generate_functional_test()[1]
    directions = directions_of(challenge.get_solve_signature())
    ref = reference_outputs(challenge, case, directions)["out"]
    truth = float64_outputs(challenge, case, directions)["out"]
    x = case["x"]
    centered = x - x.mean(dim=1, keepdim=True)
    mine = (centered * centered).mean(dim=1)
    assert excess(ref, truth, 1e-4, 1e-4) > 2          # the reference misses it
    assert excess(mine, truth, 1e-4, 1e-4) < 0.1       # the two-pass solution is far closer
    assert excess(mine, ref.double(), 1e-4, 1e-4) > 1  # ... so the reference alone fails it


def test_a_solution_closer_to_float64_than_the_reference_is_accepted_and_the_rule_said():
    result = _submit("two_pass.pytorch.py")
    assert result.verdict == "accepted", (result.message, [t.message for t in result.tests])
    ruled = [t for t in result.tests if RULE in t.message]
    # the 64 x 4096 functional case and the performance case, not the small one
    assert [t.name for t in ruled] == ["test 2", "performance"], [t.name for t in result.tests]
    assert "the reference itself is" in ruled[0].message
    notes = [n for n in result.notes if RULE in n]
    assert len(notes) == 1 and "test 2, performance" in notes[0], result.notes


def test_an_output_further_from_float64_than_the_reference_still_fails():
    result = _submit("bfloat16.pytorch.py")
    assert result.verdict == "wrong_answer", result.message
    assert not any(RULE in n for n in result.notes)


def test_the_reference_itself_passes_without_the_rule():
    result = _submit("reference_copy.pytorch.py")
    assert result.verdict == "accepted", result.message
    assert not any(RULE in t.message for t in result.tests) and not any(RULE in n for n in result.notes)


def test_the_rule_is_said_in_the_text_report():
    from runner.report import render_text

    text = render_text(_submit("two_pass.pytorch.py"))
    assert f"note: the rule '{RULE}' was used on test 2, performance" in text
    assert "[PASS] test 2" in text and "accepted by the rule" in text


def test_validate_checks_the_performance_case_fails_ours_and_warns_leetgpus():
    from runner.authoring.results import FAIL, PASS, WARN
    from runner.authoring.validate import validate

    def status(folder):
        report = validate(find_challenge(str(folder)), torch.device("cpu"),
                          only=["float64-performance"])
        return {c.name: c for c in report.checks}["float64-performance"]

    ours = status(VARIANCE)
    assert ours.status == FAIL and "on the performance test" in ours.message, ours
    assert "accuracy against float64" in ours.hint
    # LeetGPU's format: the functional cases are within tolerance, the performance case is not
    leetgpu = status(HERE / "leetgpu" / "challenges" / "easy" / "2_row_variance")
    assert leetgpu.status == WARN and "on the performance test" in leetgpu.message, leetgpu
    full = validate(find_challenge(str(HERE / "leetgpu" / "challenges" / "easy" / "2_row_variance")),
                    torch.device("cpu"), only=["float64"])
    assert {c.name: c for c in full.checks}["float64"].status == PASS


@pytest.mark.parametrize("number", ["96", "97", pytest.param("98", marks=pytest.mark.slow)])
def test_no_challenge_of_this_project_needs_the_rule(number):
    from runner.authoring.results import PASS
    from runner.authoring.validate import validate

    report = validate(find_challenge(number), torch.device("cpu"),
                      only=["float64", "float64-performance"])
    checks = {c.name: c for c in report.checks}
    assert checks["float64"].status == PASS, checks["float64"]
    assert checks["float64-performance"].status == PASS, checks["float64-performance"]


def test_in_leetgpus_format_the_rule_holds_on_the_performance_case():
    """As on LeetGPU's multi-head attention: the functional cases are fine, the reference misses
    the tolerance only on the performance case, where a more accurate solution used to fail."""
    folder = HERE / "leetgpu" / "challenges" / "easy" / "2_row_variance"
    options = GradeOptions(action="submit", device=torch.device("cpu"), isolate=False)
    result = grade_safely(find_challenge(str(folder)), SOLUTIONS / "two_pass.pytorch.py",
                          "pytorch", options)
    assert result.verdict == "accepted", (result.message, [t.message for t in result.tests])
    assert [t.name for t in result.tests if RULE in t.message] == ["performance"]
    worse = grade_safely(find_challenge(str(folder)), SOLUTIONS / "bfloat16.pytorch.py",
                         "pytorch", options)
    assert worse.verdict == "wrong_answer"
