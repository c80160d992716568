"""LeetGPU fidelity: what a challenge written for LeetGPU's set, and a solution written for
LeetGPU, get here. Each defect found by grading LeetGPU's public set has a self-written fixture
(tests/fixtures/leetgpu, see its README): parameters bound by position, infinite right
answers, zero-filled outputs, an nn.Module parameter, -128 inputs, LeetGPU's example styles,
and validate's two levels of rules."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import HARNESS_SOLUTIONS, REPO, grade_json
from runner.authoring.validate import validate
from runner.buffers import GUARD_PATTERN, prepare_call, promise_initial
from runner.policy import GUARD_BYTES
from runner.catalog import find_challenge
from runner.check import compare, unwritten_nan
from runner.cli import main
from runner.compat.fills import ConstantFills
from runner.errors import CompileError
from runner.languages.python_module import find_solve, static_solve

CHECKOUT = REPO / "tests" / "fixtures" / "leetgpu"
FOLDERS = {p.name.split("_", 1)[1]: p for p in (CHECKOUT / "challenges").glob("*/*_*")}
THEIR_SOLUTIONS = CHECKOUT / "solutions"


def submit(capsys, folder, solution, *extra):
    return grade_json(capsys, FOLDERS[folder], "--solution", THEIR_SOLUTIONS / solution,
                      "--action", "submit", "--no-sandbox", *extra)


# -- parameters are bound by position -----------------------------------------------------------

def module_with(source: str, tmp_path: Path):
    path = tmp_path / "m.py"
    path.write_text(source)
    namespace = {}
    exec(compile(source, str(path), "exec"), namespace)
    return type("M", (), namespace), path


@pytest.mark.parametrize("source, notes", [
    ("def solve(A, B, C, N): pass", []),
    ("def solve(a, b, c, n): pass", ["receives A -> a, B -> b, C -> c, N -> n"]),
    ("def solve(A, B, c, N, extra=1): pass", ["receives C -> c"]),
    ("def solve(*args): pass", []),
])
def test_any_names_are_accepted_and_a_rename_is_noted(source, notes, tmp_path):
    module, path = module_with(source, tmp_path)
    assert callable(find_solve(module, path, ["A", "B", "C", "N"]))
    problem, got = static_solve(path, ["A", "B", "C", "N"])    # what the grader's side reads
    assert problem is None
    assert len(got) == len(notes) and all(n in g for n, g in zip(notes, got)), got


@pytest.mark.parametrize("source, message", [
    ("def solve(a, b, c): pass", "takes (a, b, c): 3 parameter(s), but the challenge passes 4"),
    ("def solve(a, b, c, n, e): pass", "5 parameter(s), but the challenge passes 4"),
    ("def solve(a, b, c, n, *, flag): pass", "keyword-only flag"),
])
def test_a_count_mismatch_is_a_compile_error_naming_both_lists(source, message, tmp_path):
    module, path = module_with(source, tmp_path)
    with pytest.raises(CompileError) as info:
        find_solve(module, path, ["A", "B", "C", "N"])
    assert message in info.value.message and "(A, B, C, N)" in info.value.message
    assert static_solve(path, ["A", "B", "C", "N"])[0] == info.value.message


def test_leetgpu_style_lowercase_names_are_accepted_with_a_note(capsys):
    code, result, _ = grade_json(capsys, FOLDERS["vector_multiply"], "--solution",
                                 THEIR_SOLUTIONS / "vector_multiply_renamed.triton.py",
                                 "--action", "submit", "--no-sandbox")
    assert (code, result["verdict"]) == (0, "accepted"), result["message"]
    assert any("bound by position" in n and "A -> a" in n for n in result["notes"])


def test_a_renamed_solution_of_ours_is_accepted_through_the_sandbox(capsys):
    code, result, _ = grade_json(capsys, "96", "--solution",
                                 HARNESS_SOLUTIONS / "renamed_parameters.pytorch.py")
    assert (code, result["verdict"]) == (0, "accepted"), result["message"]
    assert any("Q -> q, K_int8 -> k" in n for n in result["notes"])


# -- infinite and NaN answers -------------------------------------------------------------------

def test_an_expected_inf_is_matched_only_by_the_same_inf():
    expected = torch.tensor([1.0, float("inf"), float("-inf")])
    ok = compare("out", expected.clone(), expected, 1e-5, 1e-5, allow_inf=True)
    assert ok.passed and ok.max_abs_error == 0.0
    for wrong in ([1.0, 3e38, float("-inf")], [1.0, float("-inf"), float("-inf")],
                  [1.0, float("nan"), float("-inf")], [1.0, float("inf"), float("inf")]):
        result = compare("out", torch.tensor(wrong), expected, 1e-5, 1e-5, allow_inf=True)
        assert not result.passed and result.mismatches == 1, wrong
    assert not compare("out", torch.tensor([float("inf")]), torch.tensor([1e38]), 1.0, 1.0).passed


def test_unexpected_non_finite_references_are_named_as_challenge_bugs():
    inf = compare("out", torch.zeros(3), torch.tensor([0.0, float("inf"), 0.0]), 1e-5, 1e-5)
    assert not inf.passed and "reference output has Inf (first at [1])" in inf.problem
    assert "bug in the challenge" in inf.problem and "allow_inf" in inf.problem
    nan = compare("out", torch.zeros(2), torch.tensor([float("nan"), 0.0]), 1e-5, 1e-5,
                  allow_inf=True)
    assert not nan.passed and "has NaN" in nan.problem and "equal_nan" in nan.problem


def test_nan_passes_only_where_allowed_and_never_as_an_unwritten_element():
    from runner.buffers import poison_

    expected = torch.tensor([float("nan"), 2.0])
    assert compare("out", torch.tensor([float("nan"), 2.0]), expected, 0, 0, allow_nan=True).passed
    unwritten = torch.empty(2)
    poison_(unwritten)
    assert bool(torch.isnan(unwritten).all()) and bool(unwritten_nan(unwritten).all())
    unwritten[1] = 2.0
    assert not compare("out", unwritten, expected, 0, 0, allow_nan=True).passed


def test_infinite_right_answers_are_graded(capsys):
    code, result, _ = submit(capsys, "shortest_paths", "shortest_paths.pytorch.py")
    assert (code, result["verdict"]) == (0, "accepted"), result["message"]
    code, result, _ = submit(capsys, "shortest_paths", "shortest_paths_no_inf.pytorch.py")
    assert (code, result["verdict"]) == (1, "wrong_answer")
    assert "expected inf" in result["message"]


# -- outputs promised zero-filled -----------------------------------------------------------------

def test_constant_fills_are_marked_through_moves_and_reshapes():
    with ConstantFills():
        zeros = torch.zeros(4).to("cpu").reshape(2, 2).contiguous()
        full = torch.full((3,), 7.0)
        filled = torch.empty(3).fill_(0.5)
        cleared = torch.empty(3).zero_()
        random = torch.randn(3)
        empty = torch.empty(3)
    assert [getattr(t, "_runner_initial_value", None) for t in (zeros, full, filled, cleared)] == [
        0, 7.0, 0.5, 0]
    assert not hasattr(random, "_runner_initial_value")
    assert not hasattr(empty, "_runner_initial_value")


def test_a_promised_output_is_handed_over_filled_with_guards_intact():
    out = promise_initial(torch.zeros(8), 0.0)
    prepared = prepare_call({"x": torch.ones(8), "out": out}, {"x": "in", "out": "out"})
    view = prepared.outputs["out"]
    assert bool((view.written() == 0).all())
    assert bool((view.storage[:GUARD_BYTES] == GUARD_PATTERN).all())
    assert bool((view.storage[GUARD_BYTES + 32:] == GUARD_PATTERN).all())
    view.written().fill_(3.0)                      # a timed call wrote it; the next starts at 0
    prepared.poison({"x": "in", "out": "out"})
    assert bool((view.written() == 0).all()) and not prepared.guard_damage()
    # not promised, or promised and then written by the generator: poisoned as usual
    for tensor in (torch.zeros(8), promise_initial(torch.zeros(8), 0.0).index_fill_(0, torch.tensor([1]), 2.0)):
        poisoned = prepare_call({"out": tensor}, {"out": "out"}).outputs["out"].written()
        assert bool(torch.isnan(poisoned).all())


def test_a_solution_relying_on_a_zero_filled_output_is_accepted(capsys):
    code, result, _ = submit(capsys, "keep_positive", "keep_positive.pytorch.py")
    assert (code, result["verdict"]) == (0, "accepted"), result["message"]
    code, result, _ = grade_json(capsys, FOLDERS["keep_positive"], "--solution",
                                 FOLDERS["keep_positive"] / "starter" / "starter.pytorch.py")
    assert (code, result["verdict"]) == (1, "wrong_answer")


def test_declared_initial_outputs_in_this_repositorys_format():
    from runner.challenge import ChallengeBase

    class Declared(ChallengeBase):
        initial_outputs = {"out": -1.0}

        def __init__(self):
            super().__init__(name="x", atol=0, rtol=0)

        def reference_impl(self, x, out): out[: x.numel()] = x
        def get_solve_signature(self): return {}
        def generate_example_test(self): return {"x": torch.ones(2), "out": torch.empty(4)}
        def generate_functional_test(self): return [self.generate_example_test()]
        def generate_performance_test(self): return self.generate_example_test()

    case = Declared().generate_functional_test()[0]
    assert case["out"].tolist() == [-1.0] * 4                # the reference sees it too
    prepared = prepare_call(case, {"x": "in", "out": "out"})
    assert prepared.outputs["out"].written().tolist() == [-1.0] * 4


# -- nn.Module and torch.Tensor parameters -----------------------------------------------------

def test_a_module_parameter_grades_and_its_new_weights_reach_the_solution(capsys):
    code, result, _ = submit(capsys, "linear_layer", "linear_layer.pytorch.py")
    assert (code, result["verdict"]) == (0, "accepted"), result["message"]
    # the fresh-inputs check loads new weights into the same layer object: a cache keyed by
    # the object fails it
    code, result, _ = submit(capsys, "linear_layer", "linear_layer_cached.pytorch.py")
    assert (code, result["verdict"]) == (1, "wrong_answer")
    assert "did not follow new inputs" in result["message"]


def test_a_module_input_must_come_back_unchanged():
    layer = torch.nn.Linear(2, 2)
    prepared = prepare_call({"layer": layer, "y": torch.empty(2)}, {"layer": "in", "y": "out"})
    assert prepared.modified_inputs() == []
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert prepared.modified_inputs() == ["layer"]


# -- validate: LeetGPU's rules are errors, this project's stricter ones warnings ---------------

@pytest.mark.parametrize("folder", ["shortest_paths", "keep_positive", "linear_layer", "int8_sum"])
def test_leetgpu_format_fixtures_validate(folder, device):
    skip = ["starter[cuda]"] if folder != "int8_sum" else []     # one CUDA build is enough
    report = validate(find_challenge(str(FOLDERS[folder])), device, skip=skip)
    failed = [f"{c.name}: {c.message}" for c in report.checks if c.status == "fail"]
    assert report.ok and not failed, failed
    by_name = {c.name: c for c in report.checks}
    assert by_name["html-example"].status == "pass", by_name["html-example"].message
    if folder == "linear_layer":
        assert by_name["signature"].status == "pass"
        assert by_name["starter[triton]"].status == "skip" and "Python object" in \
            by_name["starter[triton]"].message
    if folder == "int8_sum":
        warning = by_name["value-range"]
        assert warning.status == "warn" and "no functional case has -128 in `x`" in warning.message
        assert "stricter rule" in warning.hint


REPO_FORMAT_INT8_SUM = """
import ctypes
import torch
from runner.challenge import ChallengeBase


class Challenge(ChallengeBase):
    def __init__(self):
        super().__init__(name="INT8 Sum", atol=0.0, rtol=0.0)

    def reference_impl(self, x, total, N):
        total.copy_(x.to(torch.int32).sum().reshape(1))

    def get_solve_signature(self):
        return {"x": (ctypes.POINTER(ctypes.c_int8), "in"),
                "total": (ctypes.POINTER(ctypes.c_int32), "out"), "N": (ctypes.c_int, "in")}

    def _case(self, n, seed):
        x = torch.randint(-127, 128, (n,), generator=self.generator(seed), dtype=torch.int8)
        return {"x": self.to_device(x),
                "total": torch.empty(1, dtype=torch.int32, device=self.device), "N": n}

    def generate_example_test(self):
        return self._case(4, 0)

    def generate_functional_test(self):
        return [self._case(n, n) for n in (1, 2, 3, 100, 1000)]

    def generate_performance_test(self):
        return self._case(100000, 7)
"""


def test_a_stricter_rule_fails_a_folder_of_this_repositorys_format(tmp_path, device):
    """The same -128 gap in this repository's format is an error, not a warning."""
    folder = tmp_path / "medium" / "6_int8_sum"
    folder.mkdir(parents=True)
    (folder / "challenge.py").write_text(REPO_FORMAT_INT8_SUM)
    (folder / "challenge.html").write_text((FOLDERS["int8_sum"] / "challenge.html").read_text())
    report = validate(find_challenge(str(folder)), device, only=["value-range"])
    line = next(c for c in report.checks if c.name == "value-range")
    assert report.format == "repo" and line.status == "fail", line


def test_validate_two_levels_in_text_and_json(capsys):
    assert main([str(FOLDERS["int8_sum"]), "--action", "validate", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["counts"]["warn"] >= 1


def test_our_int8_challenges_reach_minus_128_under_validate(device):
    for number in ("96", "98"):
        report = validate(find_challenge(number), device, only=["value-range"])
        line = next(c for c in report.checks if c.name == "value-range")
        assert line.status == "pass" and "[-128, 127]" in line.message, (number, line.message)


# -- Triton's interpreter whatever imported triton first ----------------------------------------

SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from pathlib import Path
{before}
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.grader.grade import grade_safely
from runner.grader.options import GradeOptions
info = find_challenge({folder!r})
load_challenge(info, torch.device("cpu"))
import torch._dynamo      # imports triton, as generating some cases does
r = grade_safely(info, Path({solution!r}), "triton",
                 GradeOptions(action="run", device=torch.device("cpu"), isolate=False))
print(r.verdict, r.message)
"""


@pytest.mark.slow
@pytest.mark.parametrize("before, expected", [
    ("", "accepted"),
    ("import triton", "runtime_error Triton was imported in this process before TRITON_INTERPRET"),
])
def test_triton_runs_under_the_interpreter_even_when_torch_imports_it(before, expected):
    if torch.cuda.is_available():
        pytest.skip("about the CPU path")
    script = SCRIPT.format(repo=str(REPO), before=before, folder=str(FOLDERS["vector_multiply"]),
                           solution=str(THEIR_SOLUTIONS / "vector_multiply.triton.py"))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.stdout.strip().startswith(expected), proc.stdout + proc.stderr
