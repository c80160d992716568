"""CUDA and CuPy solutions on a GPU: accepted when right, rejected cleanly when wrong, CUDA
launch errors named, builds reused, CuPy zero-copy on torch's stream."""

import math
import re

import pytest
import torch

from helpers import HARNESS_SOLUTIONS, STARTERS_96, WRONG_96, grade_json
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.errors import UserRuntimeError
from runner.languages import cuda, cuda_build, nvcc

pytestmark = pytest.mark.gpu

ACCEPTED = ["cuda_correct.cu", "cupy_correct.cupy.py", "cupy_elementwise.cupy.py",
            "cupy_array.cupy.py"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gpu-cache"))
    monkeypatch.setattr(nvcc, "_info_memo", {})


@pytest.fixture(scope="module")
def challenge():
    return load_challenge(find_challenge("96"), torch.device("cuda"))


def grade(capsys, path, action):
    return grade_json(capsys, "96", "--solution", path, "--action", action, "--device", "cuda")


@pytest.mark.parametrize("name", ACCEPTED)
@pytest.mark.parametrize("action", ["run", "submit"])
def test_correct_solutions_are_accepted(capsys, name, action):
    code, result, _ = grade(capsys, HARNESS_SOLUTIONS / name, action)
    assert code == 0 and result["verdict"] == "accepted", (result["message"], result["details"])
    if action == "submit":
        assert len(result["tests"]) == 14 and all(t["passed"] for t in result["tests"])  # 13 + perf
        perf = result["performance"]
        assert perf["timed"] and perf["solution"]["median_ms"] > 0
        print(f"\n{name}: perf case median {perf['solution']['median_ms'] * 1e3:.1f} us, "
              f"reference {perf['reference']['median_ms'] * 1e3:.1f} us on {result['device']}")


@pytest.mark.parametrize("path", [WRONG_96 / "no_k_scale.cu", WRONG_96 / "swapped_scales.cupy.py"])
def test_wrong_solutions_get_wrong_answer(capsys, path):
    code, result, _ = grade(capsys, path, "submit")
    assert code == 1 and result["verdict"] == "wrong_answer", result["message"]
    assert "differ by more than" in result["message"]


@pytest.mark.parametrize("starter", ["starter.cu", "starter.cupy.py", "starter.triton.py",
                                     "starter.pytorch.py"])
def test_starters_run_and_get_wrong_answer(capsys, starter):
    code, result, _ = grade(capsys, STARTERS_96 / starter, "run")
    assert code == 1 and result["verdict"] == "wrong_answer", (result["message"], result["details"])
    assert "got nan" in result["message"]   # outputs untouched, still poisoned


def test_launch_configuration_error_is_a_runtime_error_naming_it(capsys):
    code, result, _ = grade(capsys, HARNESS_SOLUTIONS / "cuda_bad_launch.cu", "run")
    assert code == 1 and result["verdict"] == "runtime_error"
    # the driver names it InvalidConfiguration (CUDA 12) or InvalidValue (CUDA 13)
    assert re.search(r"cudaErrorInvalid(Configuration|Value)", result["message"]), result["message"]
    assert "1024 threads per block" in result["message"]


# -- in this process ----------------------------------------------------------------------------

def reference64(case):
    """The attention of challenge 96 in float64."""
    d = case["head_dim"]
    keys = case["K_int8"].double() * case["k_scale"].double().unsqueeze(-1)
    values = case["V_int8"].double() * case["v_scale"].double().unsqueeze(-1)
    scores = torch.einsum("hd,hsd->hs", case["Q"].double(), keys) / math.sqrt(d)
    return torch.einsum("hs,hsd->hd", torch.softmax(scores, dim=-1), values)


def fresh_case(challenge, heads, seq_len, head_dim, seed):
    case = challenge._case(heads, seq_len, head_dim, seed=seed)
    case["output"].fill_(float("nan"))
    return case


def test_cuda_call_matches_float64_and_a_launch_error_does_not_stick(challenge, monkeypatch):
    calls = []
    real_run, real_build = nvcc._run, cuda_build.run_bounded
    monkeypatch.setattr(nvcc, "_run", lambda *a, **k: calls.append(a[0]) or real_run(*a, **k))
    monkeypatch.setattr(cuda_build, "run_bounded",
                        lambda *a, **k: calls.append(a[0]) or real_build(*a, **k))
    solve = cuda.load(HARNESS_SOLUTIONS / "cuda_correct.cu", challenge, torch.device("cuda"))
    bad = cuda.load(HARNESS_SOLUTIONS / "cuda_bad_launch.cu", challenge, torch.device("cuda"))
    case = fresh_case(challenge, 5, 777, 96, seed=4242)
    with pytest.raises(UserRuntimeError, match="cudaErrorInvalid(Configuration|Value)"):
        bad(case)
    solve(case)   # the error was read and cleared: the next call is clean
    torch.cuda.synchronize()
    expected = reference64(case)
    assert torch.allclose(case["output"].double(), expected, atol=1e-4, rtol=1e-4)
    # loading again in a new "process" reuses both libraries without nvcc
    monkeypatch.setattr(nvcc, "_info_memo", {})
    before = len(calls)
    cuda.load(HARNESS_SOLUTIONS / "cuda_correct.cu", challenge, torch.device("cuda"))
    assert len(calls) == before


def test_cached_build_is_reused_by_a_second_submission(capsys):
    folder = nvcc.cuda_cache_dir()
    grade(capsys, HARNESS_SOLUTIONS / "cuda_correct.cu", "run")
    libraries = sorted(folder.glob("*.so"))
    stamps = [p.stat().st_mtime_ns for p in libraries]
    code, result, _ = grade(capsys, HARNESS_SOLUTIONS / "cuda_correct.cu", "run")
    assert code == 0 and result["verdict"] == "accepted"
    assert sorted(folder.glob("*.so")) == libraries
    assert [p.stat().st_mtime_ns for p in libraries] == stamps, "the library was rebuilt"


STREAM_PROBE = '''
import cupy as cp
seen = {}
scale = cp.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x", "double_it")
raw = cp.RawKernel(r"""extern "C" __global__ void add_one(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] += 1.0f; }""", "add_one")

def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    seen["stream"] = cp.cuda.get_current_stream().ptr
    seen["output_ptr"] = output.data.ptr
    seen["types"] = (type(output).__name__, type(num_heads).__name__)
    n = num_heads * head_dim
    output[...] = scale(Q)                                    # ElementwiseKernel
    raw(((n + 127) // 128,), (128,), (output, cp.int32(n)))   # RawKernel
    output += cp.float32(0.5)                                 # array code
'''


def test_cupy_gets_zero_copy_arrays_on_torchs_current_stream(challenge, tmp_path):
    from runner.languages import cupy as cupy_language
    path = tmp_path / "probe.cupy.py"
    path.write_text(STREAM_PROBE)
    solve = cupy_language.load(path, challenge, torch.device("cuda"))
    import sys
    seen = sys.modules["user_solution"].seen
    for stream in (torch.cuda.current_stream(), torch.cuda.Stream()):
        with torch.cuda.stream(stream):
            case = fresh_case(challenge, 3, 10, 16, seed=7)
            solve(case)
            stream.synchronize()
        assert seen["stream"] == stream.cuda_stream
        assert seen["output_ptr"] == case["output"].data_ptr()
        assert seen["types"] == ("ndarray", "int")
        assert torch.equal(case["output"], case["Q"] * 2 + 1.5)
