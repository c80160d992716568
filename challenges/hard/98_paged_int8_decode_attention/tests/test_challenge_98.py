"""Challenge 98 (paged INT8 decode attention with grouped-query heads): the reference against an
independent float64 NumPy implementation, the generators (the promised cases, valid tables,
stale data that matters), the shipped solutions and starters, and mistakes the tests catch."""

import math
import shutil
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
from runner.languages import backend

FOLDER = Path(__file__).resolve().parent.parent
REFERENCE = FOLDER / "reference"
STARTERS = FOLDER / "starter"
WRONG = FOLDER / "solutions" / "wrong"


def numpy_attention(case, *, whole_blocks=False, kv_head_of=None) -> np.ndarray:
    """float64 NumPy, token by token through the block table. ``whole_blocks`` and
    ``kv_head_of`` give two wrong variants (stale tail rows read; another head mapping)."""
    q = case["Q"].cpu().numpy().astype(np.float64)
    kc, vc = case["k_cache"].cpu().numpy(), case["v_cache"].cpu().numpy()
    ks = case["k_scale"].cpu().numpy().astype(np.float64)
    vs = case["v_scale"].cpu().numpy().astype(np.float64)
    table, lens = case["block_table"].cpu().numpy(), case["context_lens"].cpu().numpy()
    bs, h_count, kvh = case["block_size"], case["num_heads"], case["num_kv_heads"]
    group = h_count // kvh
    out = np.zeros(q.shape)
    for b, length in enumerate(lens):
        n = -(-int(length) // bs) * bs if whole_blocks else int(length)
        pos = np.arange(n)
        blk, off = table[b, pos // bs], pos % bs
        for h in range(h_count):
            g = kv_head_of(h, group, kvh) if kv_head_of else h // group
            k = kc[blk, off, g].astype(np.float64) * ks[blk, off, g][:, None]
            v = vc[blk, off, g].astype(np.float64) * vs[blk, off, g][:, None]
            logits = k @ q[b, h] / math.sqrt(case["head_dim"])
            w = np.exp(logits - logits.max())
            out[b, h] = (w / w.sum()) @ v
    return out


@pytest.fixture(scope="module")
def challenge():
    return load_challenge(find_challenge("98"), torch.device("cpu"))


@pytest.fixture(scope="module")
def functional(challenge):
    return challenge.generate_functional_test()


@pytest.fixture(scope="module")
def perf(challenge):
    return challenge.generate_performance_test()


def reference(challenge, case):
    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    challenge.reference_impl(**args)
    return args["output"]


def passes(challenge, got, expected, case) -> bool:
    return compare_output(challenge, "output", torch.as_tensor(got, dtype=torch.float32),
                                expected, case).passed


# -- the reference ----------------------------------------------------------------------------

def test_reference_matches_float64_numpy_on_every_case(challenge, functional):
    for name, case in [("example", challenge.generate_example_test())] + \
            [(f"functional {i}", c) for i, c in enumerate(functional)]:
        got = reference(challenge, case).numpy()
        want = numpy_attention(case)
        assert np.isfinite(got).all(), name
        assert np.allclose(got, want, atol=1e-4, rtol=1e-4), (name, np.abs(got - want).max())


def test_mistakes_are_caught_by_the_cases(challenge, functional):
    """Reading a last block whole, mapping query heads to KV heads round-robin, or ignoring
    the block table each fail some functional case; exp() without the max overflows."""
    wrong = {
        "whole last blocks": lambda c: numpy_attention(c, whole_blocks=True),
        "head h -> kv head h % num_kv_heads": lambda c: numpy_attention(
            c, kv_head_of=lambda h, group, kvh: h % kvh),
    }
    for label, variant in wrong.items():
        assert any(not passes(challenge, variant(c), reference(challenge, c), c)
                   for c in functional), label
    # blocks taken in pool order instead of through the table
    contiguous = []
    for c in functional:
        plain = dict(c, block_table=torch.arange(c["block_table"].numel(), dtype=torch.int32)
                     .reshape(c["block_table"].shape) % c["num_blocks"])
        contiguous.append(not passes(challenge, numpy_attention(plain), reference(challenge, c), c))
    assert any(contiguous)
    # int8 read through the symmetric range (-128 as -127) fails the cases built for it, on
    # the tensor-core shape (head_dim 128, blocks of 16) and on an odd one
    clamped = [c for c in functional if c["head_dim"] in (128, 40) and not passes(
        challenge, numpy_attention(dict(c, k_cache=c["k_cache"].clamp(-127, 127),
                                        v_cache=c["v_cache"].clamp(-127, 127))),
        reference(challenge, c), c)]
    assert {(c["head_dim"], c["block_size"]) for c in clamped} >= {(128, 16), (40, 5)}
    # the large-logit case overflows exp() in float32 unless the max is subtracted
    big = functional[7]
    q, k = big["Q"].double(), big["k_cache"].double() * big["k_scale"].double()[..., None]
    assert (torch.einsum("bhd,nskd->bhnsk", q, k) / 8 > 89).any()


# -- generators ---------------------------------------------------------------------------------

def used_blocks(case):
    bs = case["block_size"]
    return [case["block_table"][b, :-(-int(n) // bs)].tolist()
            for b, n in enumerate(case["context_lens"].tolist())]


def test_cases_are_valid_and_cover_the_promised_cases(challenge, functional, perf):
    for case in [challenge.generate_example_test(), *functional, perf]:
        b, h, kvh, d = case["batch"], case["num_heads"], case["num_kv_heads"], case["head_dim"]
        bs, nb, mb = case["block_size"], case["num_blocks"], case["max_blocks_per_seq"]
        assert 1 <= b <= 256 and 1 <= kvh <= h <= 64 and h % kvh == 0
        assert 8 <= d <= 256 and d % 8 == 0 and 1 <= bs <= 256
        lens = case["context_lens"]
        assert lens.dtype == torch.int32 and (lens >= 1).all() and (lens <= 32768).all()
        assert (lens <= mb * bs).all()
        assert case["block_table"].shape == (b, mb) and case["block_table"].dtype == torch.int32
        for blocks in used_blocks(case):
            assert all(0 <= x < nb for x in blocks) and len(set(blocks)) == len(blocks)
        assert (case["k_scale"] > 0).all() and (case["v_scale"] > 0).all()
        assert case["k_cache"].shape == (nb, bs, kvh, d) and case["k_scale"].shape == (nb, bs, kvh)
    lens = [c["context_lens"].tolist() for c in functional]
    assert any(1 in x for x in lens)                                             # length 1
    assert any(n % c["block_size"] for c, x in zip(functional, lens) for n in x)  # partial blocks
    assert any(max(x) >= 1000 * min(x) for x in lens)                             # very uneven
    ratios = {c["num_heads"] // c["num_kv_heads"] for c in functional}
    assert {1, 4, 8} <= ratios
    assert any(c["num_kv_heads"] == 1 and c["num_heads"] > 1 for c in functional)  # MQA
    assert {16, 256} <= {c["block_size"] for c in functional}
    shared = [c for c in functional if len(used_blocks(c)) > 1 and
              set(used_blocks(c)[0]) & set(used_blocks(c)[1])]
    assert shared                                                                # prefix sharing
    assert any(any(x != sorted(x) for x in used_blocks(c)) for c in functional)  # shuffled
    assert any((c["block_table"] == -1).any() for c in functional)               # -1 padding
    assert max(c["num_heads"] for c in functional) == 64
    assert {8, 40, 256} <= {c["head_dim"] for c in functional}
    for name in ("k_cache", "v_cache"):       # the full int8 range, -128 included
        assert min(int(c[name].min()) for c in functional) == -128, name
        assert max(int(c[name].max()) for c in functional) == 127, name
    # stale rows: a last block's unused tail holds data (not zeros) that would change the answer
    assert any(n % c["block_size"] and c["k_cache"].abs().sum() > 0
               for c in functional for n in c["context_lens"].tolist())
    assert (perf["batch"], perf["num_heads"], perf["num_kv_heads"], perf["head_dim"],
            perf["block_size"], perf["max_blocks_per_seq"]) == (64, 32, 8, 128, 16, 512)


def test_generators_are_deterministic_and_the_seed_changes_data_not_sizes(challenge, functional,
                                                                         perf):
    a, b = functional, challenge.generate_functional_test()
    for x, y in zip(a, b):
        for key, value in x.items():
            if key != "output":
                assert (torch.equal(value, y[key]) if isinstance(value, torch.Tensor)
                        else value == y[key]), key
    base = perf
    challenge.seed = 777
    try:
        other = challenge.generate_performance_test()
    finally:
        challenge.seed = 0
    assert torch.equal(base["context_lens"], other["context_lens"])
    assert not torch.equal(base["block_table"], other["block_table"])
    assert not torch.equal(base["Q"], other["Q"])
    assert challenge.bytes_moved(base) == challenge.bytes_moved(other)


def test_example_matches_the_spec(challenge):
    html = (FOLDER / "challenge.html").read_text()
    case = challenge.generate_example_test()
    out = reference(challenge, case)
    for b, rows in enumerate(out.tolist()):
        text = "[" + ", ".join("[" + ", ".join(f"{v:.4f}" for v in r) + "]" for r in rows) + "]"
        assert f"output[{b}] = {text}" in html, text
    for block, rows in enumerate(case["k_cache"].tolist()):
        assert f"k_cache[{block}] = {rows}" in html
    assert "block_table = [[2, 0, -1], [2, 3, -1]]" in html and "context_lens = [3, 4]" in html


def test_cost_model(challenge, perf):
    case = perf
    tokens = int(case["context_lens"].sum())
    blocks = sum(-(-n // 16) for n in case["context_lens"].tolist())
    assert tokens == 233144 and case["num_blocks"] == 15625
    assert challenge.bytes_moved(case) == (tokens * 8 * 2 * 132 + 4 * blocks + 4 * 64
                                           + 2 * 4 * 64 * 32 * 128)
    assert challenge.flops(case) == 4 * tokens * 32 * 128
    html = (FOLDER / "challenge.html").read_text()
    assert "494.6 MB" in html and "233,144 tokens" in html and "15,625" in html


# -- solutions and starters ---------------------------------------------------------------------

@pytest.mark.parametrize("language, solution", [("pytorch", "solution.pytorch.py"),
                                                ("triton", "solution.triton.py")])
def test_references_are_accepted_on_run_and_pass_the_functional_cases(capsys, challenge,
                                                                      functional, language,
                                                                      solution):
    code, result, _ = grade_json(capsys, "98", "--solution", REFERENCE / solution)
    assert code == 0 and result["verdict"] == "accepted", result["message"]
    solve = backend(language).load(REFERENCE / solution, challenge, torch.device("cpu"))
    cases = functional if language == "pytorch" else functional[:-1]   # the interpreter is slow
    for i, case in enumerate(cases):
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        args["output"].fill_(float("nan"))
        solve(args)
        result = compare_output(challenge, "output", args["output"],
                                      reference(challenge, case), case)
        assert result.passed, (i, result.describe(challenge.atol, challenge.rtol))


@pytest.mark.parametrize("starter", ["starter.pytorch.py", "starter.triton.py"])
def test_starters_are_wrong_answers(capsys, starter):
    code, result, _ = grade_json(capsys, "98", "--solution", STARTERS / starter)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "got nan" in result["message"]


def test_reading_stale_rows_is_a_wrong_answer(capsys, tmp_path):
    path = tmp_path / "whole_blocks.pytorch.py"
    path.write_text((REFERENCE / "solution.pytorch.py").read_text().replace(
        "valid = pos[None, :] < lens[b0:b1, None]",
        "valid = pos[None, :] < (-(-lens[b0:b1, None] // block_size) * block_size)"))
    code, result, _ = grade_json(capsys, "98", "--solution", path)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "differ by more than" in result["message"]


def test_a_decode_that_ignores_the_block_table_is_a_wrong_answer(capsys, tmp_path):
    """solutions/wrong/ignores_block_table.pytorch.py fails for that mistake alone: with the
    one line that skips the table put right, the same file is accepted."""
    wrong = WRONG / "ignores_block_table.pytorch.py"
    code, result, _ = grade_json(capsys, "98", "--solution", wrong)
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "differ by more than" in result["message"]
    mistake = "blocks = (b * max_blocks_per_seq + used) % num_blocks"
    fixed = tmp_path / "through_the_table.pytorch.py"
    through_the_table = "blocks = block_table[b, :len(used)].long()"
    fixed.write_text(wrong.read_text().replace(mistake, through_the_table))
    assert mistake in wrong.read_text()
    code, result, _ = grade_json(capsys, "98", "--solution", fixed)
    assert code == 0 and result["verdict"] == "accepted", result["message"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("path", [REFERENCE / "solution.cu", STARTERS / "starter.cu"])
def test_cuda_files_compile(path, challenge, tmp_path, monkeypatch):
    assert_compiles_without_a_gpu(path, challenge, tmp_path, monkeypatch)


def test_every_starter_and_python_solution_has_the_signature(challenge):
    assert_python_files_take_the_signature(challenge, STARTERS, REFERENCE)


# -- the CUDA references' logic on the CPU (tests/cuda_emulation.py) ---------------------------

@pytest.mark.parametrize("defines", [(), ("PG_TC_L2PF 0",)], ids=["default", "plain-loads"])
def test_cuda_reference_logic_on_the_cpu(challenge, functional, tmp_path, defines):
    library = emulate_cuda(REFERENCE / "solution.cu", tmp_path, defines)
    if library is None:
        pytest.skip("needs g++ with C++20 <barrier>")
    # float32 kernel: the example, head_dim 40 with GQA 3 over three chunks (the merge), head_dim
    # 8 and block_size 1 (VEC 8). Tensor-core kernel (head_dim 64/128, block_size % 16 == 0):
    # heads per tile 1 (MHA), 2, 4 (with -1 padding; logits in the hundreds), 8 (GQA 8, and GQA 16
    # as two tiles), block_size 256, v_scale over six decades (the weights' exponent tracking),
    # tiny and huge queries (their power-of-two normalisation).
    extra = [challenge._case(21, [40, 129], 16, 2, 128, 16),
             challenge._case(22, [70, 3], 4, 2, 64, 16),
             challenge._case(23, [33, 97], 16, 1, 64, 16),
             challenge._case(24, [100, 20], 4, 1, 128, 32, v_scale_range=(1e-4, 30.0)),
             challenge._case(25, [50], 8, 2, 64, 16, q_scale=1e-4),
             challenge._case(26, [50], 8, 2, 128, 16, q_scale=1e3),
             challenge._case(27, [300, 17], 4, 4, 128, 256)]
    cases = [challenge.generate_example_test()] + [functional[i] for i in (0, 1, 8, 9)] + extra
    for i, case in enumerate(cases):
        got = call_emulated(library, challenge, case)["output"]
        result = compare_output(challenge, "output", got, reference(challenge, case), case)
        assert result.passed, (i, result.describe(challenge.atol, challenge.rtol))


# -- on a GPU (run by the lead on the device) ----------------------------------------------------

@pytest.mark.gpu
def test_cuda_reference_on_every_functional_case_against_float64(challenge):
    gpu = load_challenge(find_challenge("98"), torch.device("cuda"))
    solve = backend("cuda").load(REFERENCE / "solution.cu", gpu, torch.device("cuda"))
    for i, case in enumerate(gpu.generate_functional_test()):
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        args["output"].fill_(float("nan"))
        solve(args)
        torch.cuda.synchronize()
        want = numpy_attention(case)
        got = args["output"].cpu().numpy()
        assert np.allclose(got, want, atol=1e-3, rtol=1e-3), (i, np.abs(got - want).max())


@pytest.mark.gpu
@pytest.mark.parametrize("starter", ["starter.cu", "starter.triton.py", "starter.pytorch.py",
                                     "starter.cupy.py"])
def test_starters_are_wrong_answers_on_the_gpu(capsys, starter):
    code, result, _ = grade_json(capsys, "98", "--solution", STARTERS / starter, "--device", "cuda")
    assert code == 1 and result["verdict"] == "wrong_answer", (result["message"], result["details"])
