"""Challenge 97 (INT8 KV-cache quantize-on-store): the reference against an independent float64
NumPy implementation, the checker's stated rule (boundary flips, untouched slots, scales), the
ChallengeBase.compare_output hook, and the shipped solutions and starters through the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cuda_emulation import call_emulated, emulate_cuda
from helpers import (assert_compiles_without_a_gpu, assert_python_files_take_the_signature,
                     grade_json)
from runner.grader.plan import compare_output
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.check import Comparison

FOLDER = Path(__file__).resolve().parent.parent
REFERENCE = FOLDER / "reference"
STARTERS = FOLDER / "starter"
WRONG = FOLDER / "solutions" / "wrong"
OUTPUTS = ("k_cache", "v_cache", "k_scale", "v_scale")
SOURCES = {"k_cache": "key", "v_cache": "value", "k_scale": "key", "v_scale": "value"}


def numpy_store(case):
    """float64 NumPy: the exact quotient 127 * x / max|x|, rounded half to even, into the slots."""
    slots = case["slot_mapping"].cpu().numpy()
    keep = np.nonzero(slots >= 0)[0]
    out = {name: case[name].cpu().numpy().copy() for name in OUTPUTS}
    exact = {}
    for src, cache, scale in (("key", "k_cache", "k_scale"), ("value", "v_cache", "v_scale")):
        x = case[src].cpu().numpy().astype(np.float64)[keep]
        m = np.abs(x).max(axis=-1) if x.size else np.zeros(x.shape[:2])
        t = 127.0 * x / np.where(m > 0, m, 1.0)[..., None]
        out[cache][slots[keep]] = np.clip(np.rint(t), -127, 127).astype(np.int8)
        out[scale][slots[keep]] = (m / 127.0).astype(np.float32)
        exact[cache] = t
    return out, keep, exact


def near_half(t, eps=1e-4):
    return np.abs(np.abs(t - np.floor(t)) - 0.5) <= eps


@pytest.fixture(scope="module")
def challenge(device):
    return load_challenge(find_challenge("97"), device)


@pytest.fixture(scope="module")
def cpu_challenge():
    return load_challenge(find_challenge("97"), torch.device("cpu"))


def all_cases(challenge):
    return ([("example", challenge.generate_example_test())]
            + [(f"functional {i}", c) for i, c in enumerate(challenge.generate_functional_test())]
            + [("performance", challenge.generate_performance_test())])


def run_reference(challenge, case):
    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    challenge.reference_impl(**args)
    return {name: args[name].cpu() for name in OUTPUTS}


def check(challenge, name, got, expected, case) -> Comparison:
    return compare_output(challenge, name, got, expected, case)


# -- the reference ----------------------------------------------------------------------------

def test_reference_matches_float64_numpy_on_every_case(challenge):
    """Equal to float64 NumPy except on halfway points; every value within the stated rule
    (0.5 + 1e-4 of 127 * x / max|x|, scales within 1e-6), which the checker relies on when it
    passes values equal to the reference's; and NumPy's answer passes the checker."""
    for name, case in all_cases(challenge):
        got = run_reference(challenge, case)
        want, keep, exact = numpy_store(case)
        slots = case["slot_mapping"].cpu().numpy()[keep]
        untouched = np.ones(case["num_slots"], dtype=bool)
        untouched[slots] = False
        for out in OUTPUTS:
            g = got[out].numpy()
            assert np.array_equal(g[untouched], case[out].cpu().numpy()[untouched]), (name, out)
        for cache in ("k_cache", "v_cache"):
            g, w = got[cache].numpy()[slots].astype(int), want[cache][slots].astype(int)
            differ = g != w
            assert np.all(np.abs(g - w) <= 1), (name, cache)
            assert np.all(near_half(exact[cache][differ])), (name, cache)
            assert np.all(np.abs(g - exact[cache]) <= 0.5 + 1e-4), (name, cache)
        for scale, src in (("k_scale", "key"), ("v_scale", "value")):
            g, w = got[scale].numpy()[slots], want[scale][slots].astype(np.float64)
            assert np.all(np.abs(g - w) <= 2.5e-7 * w), (name, scale)   # float32 rounding
            m = (np.abs(case[src].cpu().numpy().astype(np.float64)[keep]).max(axis=-1)
                 if len(keep) else np.zeros((0, case["num_kv_heads"])))
            assert np.all(np.abs(g - m / 127) <= 1e-6 * m / 127), (name, scale)
        for out in OUTPUTS:
            result = check(challenge, out, torch.from_numpy(want[out]), got[out], case)
            assert result.passed, (name, out, result.problem)


def test_a_flip_on_a_halfway_point_is_accepted(cpu_challenge):
    # the "halves" case: integers with max |x| = 254, so 127 * x / max|x| = x / 2 exactly
    case = next(c for c in cpu_challenge.generate_functional_test()
                if c["key"].abs().amax().item() == 254 and c["head_dim"] == 64)
    expected = run_reference(cpu_challenge, case)
    _, keep, exact = numpy_store(case)
    slots = case["slot_mapping"].cpu().numpy()[keep]
    got = expected["k_cache"].clone()
    t = exact["k_cache"]
    halves = near_half(t)
    assert halves.sum() > 100
    other = np.where(np.rint(t) > t, np.floor(t), np.ceil(t))     # the other neighbour
    rows = got[torch.from_numpy(slots)].numpy()
    rows[halves] = other[halves]
    got[torch.from_numpy(slots)] = torch.from_numpy(rows)
    assert not torch.equal(got, expected["k_cache"])
    assert check(cpu_challenge, "k_cache", got, expected["k_cache"], case).passed


def test_a_flip_away_from_a_halfway_point_is_rejected(cpu_challenge):
    case = cpu_challenge.generate_functional_test()[4]     # random rows with -1 padding
    expected = run_reference(cpu_challenge, case)
    _, keep, exact = numpy_store(case)
    slots = case["slot_mapping"].cpu().numpy()[keep]
    t = exact["v_cache"]
    token, head, j = map(int, np.argwhere(~near_half(t, 0.05) & (np.abs(t) < 100))[0])
    got = expected["v_cache"].clone()
    got[int(slots[token]), head, j] += 1 if t[token, head, j] < np.rint(t[token, head, j]) else -1
    result = check(cpu_challenge, "v_cache", got, expected["v_cache"], case)
    assert not result.passed and result.mismatches == 1
    assert "rounded to nearest" in result.problem
    assert result.worst.index == [int(slots[token]), head, j]


def test_the_halfway_window_is_narrow(cpu_challenge):
    """x = 1 with max|x| = 254: 127 x / max|x| = 0.5 exactly, so 0 and 1 both pass. With
    max|x| = 253.875 (the float16 just below) it is 0.500246, 2.5e-4 past the halfway point:
    only 1 passes."""
    for amax, zero_passes in ((254.0, True), (253.875, False)):
        case = cpu_challenge.generate_example_test()
        case["value"][0, 1] = torch.tensor([amax, 1, 0, 0, 0, 0, 0, 0], dtype=torch.float16)
        expected = run_reference(cpu_challenge, case)       # token 0 goes to slot 2
        for q, passes in ((0, zero_passes), (1, True), (2, False), (-1, False)):
            got = expected["v_cache"].clone()
            got[2, 1, 1] = q
            assert check(cpu_challenge, "v_cache", got, expected["v_cache"], case).passed == passes


def test_touching_a_slot_not_named_is_rejected(cpu_challenge):
    case = cpu_challenge.generate_functional_test()[4]
    expected = run_reference(cpu_challenge, case)
    named = set(case["slot_mapping"].tolist())
    free = next(s for s in range(case["num_slots"]) if s not in named)
    for out in OUTPUTS:
        got = expected[out].clone()
        if out.endswith("cache"):
            got[free, 0, 0] = got[free, 0, 0] ^ 1
        else:
            got.view(torch.int32)[free, 0] ^= 1                 # one bit of the float
        result = check(cpu_challenge, out, got, expected[out], case)
        assert not result.passed and result.mismatches == 1, out
        assert "not named in slot_mapping" in result.problem and result.worst.index[0] == free


def test_scales_within_the_stated_relative_tolerance(cpu_challenge):
    case = cpu_challenge.generate_functional_test()[5]     # has all-zero rows
    expected = run_reference(cpu_challenge, case)
    slots = case["slot_mapping"][case["slot_mapping"] >= 0].long()
    amax = case["key"].double().abs().amax(-1)[case["slot_mapping"] >= 0]
    exact = amax / 127
    for rel, passes in ((5e-7, True), (-5e-7, True), (2e-6, False), (-2e-6, False)):
        got = expected["k_scale"].clone()
        got[slots] = (exact * (1 + rel)).float()
        assert check(cpu_challenge, "k_scale", got, expected["k_scale"], case).passed == passes, rel
    zero_row = torch.nonzero(amax == 0)[0]
    for bad in (1e-30, float("nan")):
        got = expected["k_scale"].clone()
        got[slots[zero_row[0]], zero_row[1]] = bad
        result = check(cpu_challenge, "k_scale", got, expected["k_scale"], case)
        assert not result.passed and "scales differ" in result.problem, bad


def _quantize_like(case, how):
    """Other ways of quantizing, written into copies of the caches."""
    out = {name: case[name].clone() for name in OUTPUTS}
    keep = case["slot_mapping"] >= 0
    slots = case["slot_mapping"][keep].long()
    for src, cache, scale in (("key", "k_cache", "k_scale"), ("value", "v_cache", "v_scale")):
        x = case[src][keep].float()
        s = x.abs().amax(-1) / 127
        if how == "reciprocal":       # x * (1 / scale) in float32: must pass
            y = x * torch.where(s > 0, 1 / s, torch.zeros_like(s))[..., None]
        elif how == "float16":         # the quotient in float16: off by more than rounding
            y = (x.half() / torch.where(s > 0, s, torch.ones_like(s)).half()[..., None]).float()
        else:                          # "truncate": a cast that rounds toward zero
            y = (x / torch.where(s > 0, s, torch.ones_like(s))[..., None]).trunc()
        out[cache][slots] = torch.round(y).clamp(-127, 127).to(torch.int8)
        out[scale][slots] = s
    return out


@pytest.mark.parametrize("how, passes", [("reciprocal", True), ("float16", False),
                                         ("truncate", False)])
def test_other_quantizers(cpu_challenge, how, passes):
    for case in [cpu_challenge.generate_functional_test()[i] for i in (4, 5, 7)]:
        expected = run_reference(cpu_challenge, case)
        got = _quantize_like(case, how)
        results = [check(cpu_challenge, out, got[out], expected[out], case) for out in OUTPUTS]
        assert all(r.passed for r in results) == passes, [r.problem for r in results]


# -- the hook in the harness --------------------------------------------------------------------

def test_compare_output_hook_default_and_override(cpu_challenge):
    c96 = load_challenge(find_challenge("96"), torch.device("cpu"))
    a = torch.ones(4)
    assert compare_output(c96, "output", a + 5e-4, a, {}).passed       # atol/rtol 1e-3
    assert not compare_output(c96, "output", a + 5e-3, a, {}).passed
    ints = torch.arange(4, dtype=torch.int8)
    assert not compare_output(c96, "x", ints + 1, ints, {}).passed   # integers: exact

    class LeetGPUStyle:        # no compare_output method: the harness's default rule
        atol, rtol = 0.1, 0.0

    assert compare_output(LeetGPUStyle(), "output", a + 0.05, a, {}).passed
    assert not compare_output(LeetGPUStyle(), "output", a + 0.2, a, {}).passed
    # challenge 97 overrides it: an int8 cache differing from the reference can still pass
    assert type(cpu_challenge).compare_output is not type(c96).compare_output


# -- generators ---------------------------------------------------------------------------------

def test_cases_satisfy_constraints_and_cover_the_promised_cases(cpu_challenge):
    cases = [c for _, c in all_cases(cpu_challenge)]
    for case in cases:
        n, h, d, s = case["N"], case["num_kv_heads"], case["head_dim"], case["num_slots"]
        assert 0 <= n <= 32768 and 1 <= h <= 64 and 8 <= d <= 256 and d % 8 == 0 and 1 <= s <= 1 << 20
        assert case["key"].shape == case["value"].shape == (n, h, d)
        assert case["key"].dtype == torch.float16 and torch.isfinite(case["key"].float()).all()
        assert case["k_cache"].shape == (s, h, d) and case["k_scale"].shape == (s, h)
        sm = case["slot_mapping"]
        assert sm.dtype == torch.int32 and sm.shape == (n,)
        named = sm[sm >= 0]
        assert ((sm == -1) | ((sm >= 0) & (sm < s))).all()
        assert named.unique().numel() == named.numel()
    functional = cases[1:-1]
    assert any(c["N"] == 1 for c in functional)
    assert any((c["slot_mapping"] == -1).all() for c in functional)
    assert any(0 < (c["slot_mapping"] == -1).sum() < c["N"] for c in functional)
    assert any((c["key"].abs().amax(-1) == 0).any() for c in functional)           # zero rows
    assert any(c["key"].abs().amax().item() > 1000 for c in functional)             # outliers
    assert {64, 128, 256} <= {c["head_dim"] for c in functional}
    assert max(c["num_kv_heads"] for c in functional) == 64
    assert any((c["slot_mapping"].diff() < 0).any() for c in functional if c["N"] > 1)
    assert any(c["num_slots"] > 100 * c["N"] for c in functional)                   # sparse
    perf = cases[-1]
    assert (perf["N"], perf["num_kv_heads"], perf["head_dim"], perf["num_slots"]) == \
        (16384, 8, 128, 65536)
    assert int((perf["slot_mapping"] == -1).sum()) == 128


def test_generators_are_deterministic_and_the_seed_changes_data(cpu_challenge):
    a, b = cpu_challenge.generate_functional_test(), cpu_challenge.generate_functional_test()
    for x, y in zip(a, b):
        for key, value in x.items():
            assert torch.equal(value, y[key]) if isinstance(value, torch.Tensor) else value == y[key]
    cpu_challenge.seed = 4242
    try:
        other = cpu_challenge.generate_performance_test()
    finally:
        cpu_challenge.seed = 0
    base = cpu_challenge.generate_performance_test()
    assert not torch.equal(base["key"], other["key"])
    assert not torch.equal(base["slot_mapping"], other["slot_mapping"])
    assert cpu_challenge.bytes_moved(base) == cpu_challenge.bytes_moved(other)


def test_example_matches_the_spec(cpu_challenge):
    html = (FOLDER / "challenge.html").read_text()
    case = cpu_challenge.generate_example_test()
    out = run_reference(cpu_challenge, case)
    for cache in ("k_cache", "v_cache"):
        for slot, rows in enumerate(out[cache].tolist()):
            line = f"{cache}[{slot}] = " + str(rows)
            assert line in html, line
    for scale in ("k_scale", "v_scale"):
        text = "[" + ", ".join("[" + ", ".join(f"{v:.9g}" for v in row) + "]"
                               for row in out[scale].tolist()) + "]"
        assert f"{scale} = {text}" in html, text
    assert "slot_mapping = [2, -1, 0]" in html


def test_cost_model(cpu_challenge):
    case = cpu_challenge.generate_performance_test()
    n = 16384 - 128
    assert cpu_challenge.bytes_moved(case) == 4 * 16384 + n * 8 * (2 * 2 * 128 + 2 * 128 + 2 * 4)
    assert "101.0 MB" in (FOLDER / "challenge.html").read_text()
    assert abs(cpu_challenge.bytes_moved(case) / 1e6 - 101.0) < 0.05


# -- solutions and starters through the CLI -----------------------------------------------------

def test_pytorch_reference_is_accepted_on_submit(capsys):
    code, result, _ = grade_json(capsys, "97", "--solution", REFERENCE / "solution.pytorch.py",
                                 "--action", "submit")
    assert code == 0 and result["verdict"] == "accepted", result["message"]
    assert len(result["tests"]) == 15 and all(t["passed"] for t in result["tests"])


def test_triton_reference_is_accepted_on_run_and_on_every_functional_case(capsys, cpu_challenge):
    code, result, _ = grade_json(capsys, "97", "--solution", REFERENCE / "solution.triton.py")
    assert code == 0 and result["verdict"] == "accepted", result["message"]
    from runner.languages import backend
    solve = backend("triton").load(REFERENCE / "solution.triton.py", cpu_challenge,
                                   torch.device("cpu"))
    for case in cpu_challenge.generate_functional_test():
        expected = run_reference(cpu_challenge, case)
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        solve(args)
        for out in OUTPUTS:
            assert check(cpu_challenge, out, args[out], expected[out], case).passed, out


@pytest.mark.parametrize("starter", ["starter.pytorch.py", "starter.triton.py"])
def test_starters_are_wrong_answers(capsys, starter):
    code, result, _ = grade_json(capsys, "97", "--solution", STARTERS / starter)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "rounded to nearest" in result["message"]   # caches untouched, rows not written


# solutions/wrong/: each one's mistake and what the verdict's message names
WRONG_MESSAGES = {"truncates.pytorch.py": "rounded to nearest",
                  "clears_the_pool.pytorch.py": "not named in slot_mapping"}


@pytest.mark.parametrize("name", sorted(WRONG_MESSAGES))
def test_wrong_solutions_are_rejected(capsys, name):
    code, result, _ = grade_json(capsys, "97", "--solution", WRONG / name)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert WRONG_MESSAGES[name] in result["message"]


def test_a_solution_that_loses_an_old_minus_128_is_rejected(capsys):
    code, result, _ = grade_json(capsys, "97", "--solution", WRONG / "clamps_the_pool.pytorch.py",
                                 "--action", "submit", "--no-sandbox")
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "not named in slot_mapping" in result["message"]


def test_checker_on_the_performance_case(cpu_challenge):
    """Fast when right, and a wholly wrong output is counted value by value."""
    import time
    case = cpu_challenge.generate_performance_test()
    expected = run_reference(cpu_challenge, case)
    started = time.perf_counter()
    for out in OUTPUTS:
        assert check(cpu_challenge, out, expected[out].clone(), expected[out], case).passed
    assert time.perf_counter() - started < 5
    got = torch.zeros_like(expected["k_scale"])
    result = check(cpu_challenge, "k_scale", got, expected["k_scale"], case)
    written = 8 * 16256
    assert not result.passed and result.mismatches == got.numel()   # scales are never 0 here
    assert f"{written} written scales differ" in result.problem
    assert f"{got.numel() - written} values in {65536 - 16256} slots not named" in result.problem


@pytest.mark.parametrize("path", [REFERENCE / "solution.cu", STARTERS / "starter.cu"])
def test_cuda_files_compile(path, cpu_challenge, tmp_path, monkeypatch):
    import shutil
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    assert_compiles_without_a_gpu(path, cpu_challenge, tmp_path, monkeypatch)


def test_every_language_has_a_starter_with_the_signature(cpu_challenge):
    assert_python_files_take_the_signature(cpu_challenge, STARTERS, REFERENCE)


def test_cuda_reference_logic_on_the_cpu(cpu_challenge, tmp_path):
    """The CUDA reference rebuilt for the CPU (tests/cuda_emulation.py) obeys the checking rule
    on every functional case."""
    library = emulate_cuda(REFERENCE / "solution.cu", tmp_path)
    if library is None:
        pytest.skip("needs g++ with C++20 <barrier>")
    for i, case in enumerate(cpu_challenge.generate_functional_test()):
        got = call_emulated(library, cpu_challenge, case)
        expected = run_reference(cpu_challenge, case)
        for out in OUTPUTS:
            result = check(cpu_challenge, out, got[out], expected[out], case)
            assert result.passed, (i, out, result.problem)


# -- on a GPU (run by the lead on the device) ----------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("starter", ["starter.cu", "starter.triton.py", "starter.pytorch.py",
                                     "starter.cupy.py"])
def test_starters_are_wrong_answers_on_the_gpu(capsys, starter):
    code, result, _ = grade_json(capsys, "97", "--solution", STARTERS / starter, "--device", "cuda")
    assert code == 1 and result["verdict"] == "wrong_answer", (result["message"], result["details"])
