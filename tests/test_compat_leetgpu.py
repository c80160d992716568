"""LeetGPU-format challenge folders load and grade unmodified (tests/fixtures/leetgpu stands in
for a checkout of LeetGPU's repository; see its README)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from helpers import grade_json
from runner.catalog import CHALLENGES_DIR, challenge_roots, discover, find_challenge, starter_files
from runner.loading import is_leetgpu_format, load_challenge
from runner.cli import main
from runner.compat.core import challenge_base as our_challenge_base
from runner.compat.specs import OutTensor, RandIntTensor, RandTensor, materialize

CHECKOUT = Path(__file__).resolve().parent / "fixtures" / "leetgpu"
OLD_STYLE = CHECKOUT / "challenges" / "easy" / "1_vector_multiply"
NEW_STYLE = CHECKOUT / "challenges" / "medium" / "2_row_sum"
SOLUTIONS = CHECKOUT / "solutions"


@pytest.fixture
def leetgpu_path(monkeypatch):
    """CHALLENGES_PATH pointing at the checkout, as a user with LeetGPU's repository would."""
    monkeypatch.setenv("CHALLENGES_PATH", str(CHECKOUT))


@pytest.mark.parametrize("folder", [OLD_STYLE, NEW_STYLE], ids=["old style", "new style"])
def test_loads_unmodified_with_our_core(folder, device):
    challenge = load_challenge(find_challenge(str(folder)), device)
    assert is_leetgpu_format(challenge)
    assert challenge.num_gpus == 1 and challenge.access_tier == "free" and challenge.atol > 0
    # the checkout's own core/challenge_base.py raises if imported: ours answered the import
    assert sys.modules["core.challenge_base"] is our_challenge_base


def test_old_style_fields_and_hard_coded_cuda_follow_the_grading_device(device):
    challenge = load_challenge(find_challenge(str(OLD_STYLE)), device)
    assert challenge.name == "Vector Multiply" and challenge.rtol == 1e-5
    case = challenge.generate_example_test()
    assert all(t.device.type == device.type for t in case.values() if isinstance(t, torch.Tensor))


def test_unseeded_generators_repeat_and_follow_the_grading_seed(device):
    challenge = load_challenge(find_challenge(str(OLD_STYLE)), device)
    first = challenge.generate_functional_test()
    again = challenge.generate_functional_test()
    assert all(torch.equal(a["A"], b["A"]) for a, b in zip(first, again))
    challenge.seed = 5
    other = challenge.generate_functional_test()
    assert not torch.equal(first[-1]["A"], other[-1]["A"])


def test_new_style_input_specs_become_tensors(device):
    challenge = load_challenge(find_challenge(str(NEW_STYLE)), device)
    case = challenge.generate_performance_test()
    assert case["matrix"].shape == (512, 1024) and case["matrix"].dtype == torch.float32
    assert case["matrix"].device.type == device.type
    assert -1.0 <= float(case["matrix"].min()) and float(case["matrix"].max()) < 1.0
    assert case["sums"].shape == (512,)
    assert callable(challenge.reference_impl_jax)   # kept, though this runner does not grade JAX


def test_specs_are_seeded_by_case_and_parameter_and_checked_for_dtype():
    a = materialize({"x": RandTensor((4,)), "y": RandTensor((4,))}, torch.device("cpu"), 7)
    b = materialize({"x": RandTensor((4,)), "y": RandTensor((4,))}, torch.device("cpu"), 7)
    assert torch.equal(a["x"], b["x"]) and not torch.equal(a["x"], a["y"])
    ints = materialize(RandIntTensor((100,), -3, 3, dtype="int8"), torch.device("cpu"), 1)
    assert ints.dtype == torch.int8 and int(ints.min()) >= -3 and int(ints.max()) < 3
    meta = materialize(OutTensor((2, 3), dtype=torch.float16), torch.device("meta"), 1)
    assert meta.device.type == "meta" and meta.dtype == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'float33'"):
        materialize(RandTensor((1,), dtype="float33"), torch.device("cpu"), 1)


def test_checkout_is_found_by_number_and_slug_through_challenges_path(leetgpu_path):
    assert challenge_roots()[0] == CHECKOUT / "challenges"
    assert challenge_roots()[-1] == CHALLENGES_DIR
    assert find_challenge("1").path == OLD_STYLE
    assert find_challenge("row_sum").path == NEW_STYLE
    assert find_challenge("96").slug == "int8_kv_cache_attention"   # ours are still there
    assert [i.path for i in discover()][:2] == [OLD_STYLE, NEW_STYLE]


def test_starters_come_from_the_folders_own_starter_directory():
    info = find_challenge(str(OLD_STYLE))
    assert set(starter_files(info)) == {"cuda", "triton", "pytorch"}
    assert starter_files(info)["triton"] == OLD_STYLE / "starter" / "starter.triton.py"


def test_init_copies_the_folders_own_starter(tmp_path, capsys):
    target = tmp_path / "mine.triton.py"
    assert main([str(OLD_STYLE), "--action", "init", "--language", "triton",
                 "--solution", str(target)]) == 0
    assert target.read_text() == (OLD_STYLE / "starter" / "starter.triton.py").read_text()


def test_starter_grades_as_wrong_answer_in_the_sandbox(leetgpu_path, capsys):
    code, result, _ = grade_json(capsys, "1", "--solution",
                                 OLD_STYLE / "starter" / "starter.triton.py")
    assert (code, result["verdict"]) == (1, "wrong_answer")


@pytest.mark.parametrize("folder, solution", [
    (OLD_STYLE, "vector_multiply.triton.py"),
    (NEW_STYLE, "row_sum.triton.py"),
    (NEW_STYLE, "row_sum.pytorch.py"),
])
def test_solutions_are_accepted(folder, solution, capsys):
    code, result, _ = grade_json(capsys, folder, "--solution", SOLUTIONS / solution,
                                 "--action", "submit", "--no-sandbox")
    assert (code, result["verdict"]) == (0, "accepted"), result["message"]
    assert len(result["tests"]) == 6   # 5 functional tests and the performance case


@pytest.mark.parametrize("folder", [OLD_STYLE, NEW_STYLE], ids=["old style", "new style"])
def test_validate_passes_in_leetgpu_format(folder, capsys):
    assert main([str(folder), "--action", "validate", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "leetgpu" and report["passed"]
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["starter[cupy]"]["status"] == "skip"           # optional in LeetGPU's format
    assert "bandwidth is not reported" in by_name["performance"]["message"]
    others = [c for c in report["checks"] if c["name"] in ("starter[JAX]", "starter[Mojo]",
                                                           "starter[CuTe DSL]")]
    assert others and all(c["status"] == "skip" for c in others)
