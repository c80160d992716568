"""Challenge 96: the reference against an independent float64 NumPy implementation, and the
generators (deterministic, within the stated constraints, covering the promised cases)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.catalog import find_challenge
from runner.loading import load_challenge

FOLDER = Path(__file__).resolve().parent.parent
WRONG = FOLDER / "solutions" / "wrong"


def numpy_attention(case) -> np.ndarray:
    q = case["Q"].cpu().numpy().astype(np.float64)
    k = case["K_int8"].cpu().numpy().astype(np.float64) * case["k_scale"].cpu().numpy()[..., None]
    v = case["V_int8"].cpu().numpy().astype(np.float64) * case["v_scale"].cpu().numpy()[..., None]
    logits = np.einsum("hd,hsd->hs", q, k) / math.sqrt(case["head_dim"])
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("hs,hsd->hd", weights, v)


@pytest.fixture(scope="module")
def challenge(device):
    return load_challenge(find_challenge("96"), device)


def all_cases(challenge):
    return ([("example", challenge.generate_example_test())]
            + [(f"functional {i}", c) for i, c in enumerate(challenge.generate_functional_test())]
            + [("performance", challenge.generate_performance_test())])


def test_reference_matches_float64_numpy_on_every_case(challenge):
    for name, case in all_cases(challenge):
        challenge.reference_impl(**case)
        expected = numpy_attention(case)
        got = case["output"].cpu().numpy()
        assert np.isfinite(got).all(), name
        assert np.allclose(got, expected, atol=1e-4, rtol=1e-4), (
            f"{name}: max err {np.abs(got - expected).max()}")


def test_generators_are_deterministic(challenge):
    first, second = challenge.generate_functional_test(), challenge.generate_functional_test()
    for a, b in zip(first, second):
        for key, value in a.items():
            if key == "output":
                continue
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            else:
                assert value == b[key]


def test_grading_seed_changes_data_not_shapes(challenge):
    base = challenge.generate_performance_test()
    challenge.seed = 12345
    try:
        other = challenge.generate_performance_test()
    finally:
        challenge.seed = 0
    assert base["Q"].shape == other["Q"].shape
    assert not torch.equal(base["Q"], other["Q"])
    assert not torch.equal(base["K_int8"], other["K_int8"])


def test_cases_satisfy_constraints(challenge):
    for name, case in all_cases(challenge):
        h, s, d = case["num_heads"], case["seq_len"], case["head_dim"]
        assert 1 <= h <= 64 and 1 <= s <= 32768 and 8 <= d <= 256 and d % 8 == 0, name
        assert case["Q"].shape == (h, d) and case["output"].shape == (h, d)
        assert case["K_int8"].shape == case["V_int8"].shape == (h, s, d)
        assert case["K_int8"].dtype == torch.int8
        assert case["k_scale"].shape == case["v_scale"].shape == (h, s)
        assert (case["k_scale"] > 0).all() and (case["v_scale"] > 0).all(), name
        for value in case.values():
            if isinstance(value, torch.Tensor):
                assert value.device.type == challenge.device.type
                assert value.is_contiguous()


def test_functional_set_covers_the_promised_cases(challenge):
    cases = challenge.generate_functional_test()
    assert len(cases) >= 10
    shapes = [(c["num_heads"], c["seq_len"], c["head_dim"]) for c in cases]
    assert any(s == 1 for _, s, _ in shapes)
    assert any(s == 2 for _, s, _ in shapes)
    assert any(s & (s - 1) for _, s, _ in shapes)              # non-power-of-two length
    assert {8, 256} <= {d for _, _, d in shapes}
    assert max(h for h, _, _ in shapes) == 64
    assert max(s for _, s, _ in shapes) == 32768
    assert any(not c["Q"].any() for c in cases)                # zero query
    # a case whose logits overflow exp() in float32 unless the max is subtracted
    overflowing = []
    for c in cases:
        k = c["K_int8"].double() * c["k_scale"].double()[..., None]
        logits = torch.einsum("hd,hsd->hs", c["Q"].double(), k) / math.sqrt(c["head_dim"])
        overflowing.append(bool((logits > 89).any()))
    assert any(overflowing)
    # and k_scale far from v_scale
    assert any((c["k_scale"].mean() / c["v_scale"].mean()) > 50 for c in cases)
    # the full int8 range: -128 and 127 in both K and V
    for name in ("K_int8", "V_int8"):
        assert min(int(c[name].min()) for c in cases) == -128, name
        assert max(int(c[name].max()) for c in cases) == 127, name


def test_minus_128_decides_an_answer(challenge):
    """On the case built for it, reading -128 as -127 moves the output far past the tolerance."""
    case = challenge.generate_functional_test()[-1]
    assert (case["K_int8"][:, 0] == -128).all() and (case["V_int8"][:, 0] == -128).all()
    challenge.reference_impl(**case)
    clamped = dict(case, K_int8=case["K_int8"].clamp(-127, 127),
                   V_int8=case["V_int8"].clamp(-127, 127), output=torch.empty_like(case["output"]))
    challenge.reference_impl(**clamped)
    error = (clamped["output"] - case["output"]).abs()
    allowed = challenge.atol + challenge.rtol * case["output"].abs()
    assert bool((error > 5 * allowed).all()), (error / allowed).min()


def test_a_solution_that_clamps_int8_to_127_is_rejected(capsys):
    from helpers import grade_json

    code, result, _ = grade_json(capsys, "96", "--solution",
                                 WRONG / "clamps_int8.pytorch.py", "--action", "submit",
                                 "--no-sandbox")
    assert (code, result["verdict"]) == (1, "wrong_answer")
    failed = [t["params"] for t in result["tests"] if not t["passed"]]
    assert {"num_heads": 4, "seq_len": 37, "head_dim": 16} in failed   # the extremes case


def test_zero_query_gives_the_mean_of_values(challenge):
    case = next(c for c in challenge.generate_functional_test() if not c["Q"].any())
    challenge.reference_impl(**case)
    v = case["V_int8"].double() * case["v_scale"].double()[..., None]
    assert torch.allclose(case["output"].double(), v.mean(dim=1), atol=1e-5)


def test_example_matches_the_spec(challenge):
    """The numbers in challenge.html's worked example are those of generate_example_test()."""
    html = (FOLDER / "challenge.html").read_text()
    case = challenge.generate_example_test()
    challenge.reference_impl(**case)
    for value in case["k_scale"].flatten().tolist() + case["v_scale"].flatten().tolist():
        assert f"{value:g}" in html
    for row in case["output"].tolist():
        for value in row:
            assert f"{value:.4f}" in html, value


def test_cost_model(challenge):
    case = challenge.generate_performance_test()
    assert challenge.bytes_moved(case) == 2 * 32 * 8192 * 128 + 2 * 4 * 32 * 8192 + 2 * 4 * 32 * 128
    assert challenge.flops(case) == 4 * 32 * 8192 * 128
