"""Challenge 98's Triton reference (tensor-core dots with fp16 hi/lo splits, inline-PTX int8 ->
fp16): the PTX conversion emulated on every byte, the kernel compiled for sm_90 without a GPU
(tensor-core mma, the PTX conversion in place of Triton's), precision against float64 on shapes
and value ranges beyond the functional cases, and GPU-like tile settings under the interpreter."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_challenge_98 import REFERENCE, numpy_attention

from runner.catalog import find_challenge
from runner.loading import load_challenge

SOLUTION = REFERENCE / "solution.triton.py"


def load_module():
    """A private instance of the solution (its CONFIG can be changed without affecting others)."""
    spec = importlib.util.spec_from_file_location("triton_98_under_test", SOLUTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def module():
    return load_module()


@pytest.fixture(scope="module")
def challenge(device):
    return load_challenge(find_challenge("98"), device)


def run(module, case):
    args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    args["output"].fill_(float("nan"))
    module.solve(**args)
    if args["output"].is_cuda:
        torch.cuda.synchronize()
    return args["output"].cpu().double().numpy()


def error_over_tolerance(got, case):
    """max |got - float64| / (atol + rtol * |float64|): 1.0 is the edge of passing."""
    want = numpy_attention(case)
    assert np.isfinite(got).all()
    return float((np.abs(got - want) / (1e-3 + 1e-3 * np.abs(want))).max())


# -- the inline PTX, emulated ---------------------------------------------------------------------

def run_ptx(text: str, word: int):
    """The few PTX instructions of the conversion, on one 32-bit input ($2); returns ($0, $1)."""
    regs = {"$2": word}

    def value(x):
        return regs[x] if x in regs else int(x, 16)

    for statement in text.strip().strip("{}").split(";"):
        parts = statement.replace(",", " ").split()
        if not parts or parts[0] == ".reg":
            continue
        op, dst, *src = parts
        if op == "xor.b32":
            regs[dst] = value(src[0]) ^ value(src[1])
        elif op == "mov.b32":
            regs[dst] = value(src[0])
        elif op == "prmt.b32":
            a, b, selector = map(value, src)
            pool = a.to_bytes(4, "little") + b.to_bytes(4, "little")
            nibbles = [(selector >> (4 * i)) & 0xF for i in range(4)]
            assert all(n < 8 for n in nibbles), "sign-replicating selectors are not emulated"
            regs[dst] = int.from_bytes(bytes(pool[n] for n in nibbles), "little")
        elif op == "sub.f16x2":
            a, b = (np.array([value(x)], dtype=np.uint32).view(np.float16) for x in src)
            regs[dst] = int((a - b).astype(np.float16).view(np.uint32)[0])
        else:
            raise AssertionError(f"the emulator does not know {op}")
    return regs["$0"], regs["$1"]


def test_the_ptx_conversion_is_exact_for_every_int8_in_every_byte(module):
    text = module.I8X4_TO_F16X4_PTX.value
    for first in range(256):
        data = bytes((first + i) % 256 for i in range(4))
        lo, hi = run_ptx(text, int.from_bytes(data, "little"))
        got = np.array([lo, hi], dtype=np.uint32).view(np.float16)   # halves, low first
        want = np.frombuffer(data, dtype=np.int8).astype(np.float16)
        assert np.array_equal(got, want), (data.hex(), got, want)


# -- compiled for an H100 without one -------------------------------------------------------------

COMPILE = r"""
import importlib.util, json, sys
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
spec = importlib.util.spec_from_file_location("sol", sys.argv[1])
sol = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sol)
fn = sol._attention_kernel
pointers = {"Q": "*fp32", "KC": "*i8", "VC": "*i8", "KS": "*fp32", "VS": "*fp32", "BT": "*i32",
            "LENS": "*i32", "OUT": "*fp32", "WS_ACC": "*fp32", "WS_ML": "*fp32", "COUNT": "*i32"}
scalars = {"num_heads": "i32", "num_kv_heads": "i32", "max_blocks": "i32", "max_chunks": "i32",
           "chunk": "i32", "qk_scale": "fp32"}
results = []
for group, head_dim, page in json.loads(sys.argv[2]):
    p = sol.plan(64, 8, group, head_dim, 8192, torch.device("cpu"))
    constants = {"GROUP": group, "HEAD_DIM": head_dim, "PAGE": page, "BLOCK_G": p["block_g"],
                 "BLOCK_N": sol.CONFIG["block_n"], "BLOCK_D": p["block_d"], "STACK": p["stack"],
                 "USE_ASM": True, "EARLY_K": sol.CONFIG["early_k"], "INDEX64": False}
    signature = {**pointers, **scalars, **{k: "constexpr" for k in constants}}
    attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]] for k in pointers}
    kernel = triton.compile(ASTSource(fn, signature, constants, attrs),
                            target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": sol.CONFIG["num_warps"],
                                     "num_stages": sol.CONFIG["num_stages"]})
    ptx = kernel.asm["ptx"]
    results.append({"shape": [group, head_dim, page], "stack": p["stack"],
                    "mma": ptx.count("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"),
                    "prmt": ptx.count("prmt.b32"), "cvt_f16_s16": ptx.count("cvt.rn.f16.s16"),
                    "shared": kernel.metadata.shared})
print(json.dumps(results))
"""


def test_the_kernel_compiles_for_sm90_with_tensor_cores_and_the_ptx_conversion(tmp_path):
    pytest.importorskip("triton.backends.nvidia.compiler")
    from triton import knobs
    try:
        ptxas = knobs.nvidia.ptxas.path
    except Exception:  # noqa: BLE001 (no bundled ptxas: nothing to compile with)
        ptxas = None
    if not ptxas or not os.path.exists(ptxas):
        pytest.skip("Triton's ptxas is not available")
    # (group, head_dim, block_size): the performance case, functional cases 9 and 10 (GQA 3,
    # head_dim 40, block_size 5; head_dim 8, block_size 1), and 16 heads a group (two dots)
    shapes = [[4, 128, 16], [3, 40, 5], [2, 8, 1], [16, 128, 16]]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", COMPILE, str(SOLUTION), json.dumps(shapes)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        assert result["mma"] > 0, result                 # both products on tensor cores
        assert result["prmt"] >= 4, result               # the PTX conversion, for K and V
        assert result["cvt_f16_s16"] == 0, result        # and not Triton's own
        assert result["shared"] <= 160 * 1024, result
    assert [r["stack"] for r in results] == [True, True, True, False]


# -- precision beyond the functional cases ------------------------------------------------------

# name -> (challenge._case's positional arguments: seed, lengths, num_heads, num_kv_heads,
# head_dim, block_size; its keyword arguments; the largest error / tolerance allowed)
STRESS = {
    # 64 query heads over one KV head (two 64-row dots), head_dim 256
    "mqa 64, head_dim 256": ((101, [700, 33], 64, 1, 256, 16), {}, 0.02),
    "group 16, block_size 7": ((102, [1500, 9, 640], 32, 2, 128, 7), {}, 0.02),
    "group 5, head_dim 40, block_size 3": ((110, [1031, 2, 64], 10, 2, 40, 3), {}, 0.02),
    "tiny v_scale": ((105, [900, 77], 8, 2, 128, 16), {"v_scale_range": (1e-6, 1e-5)}, 0.02),
    "v_scale over 5 decades": ((107, [1100, 250], 8, 2, 64, 16),
                               {"v_scale_range": (1e-4, 10.0)}, 0.2),
    "tiny q": ((108, [800], 8, 4, 128, 16), {"q_scale": 1e-4}, 0.02),
    # q beyond fp16's range (65,504) before normalisation, tiny k_scale
    "huge q": ((109, [800, 100], 8, 4, 128, 16),
               {"q_scale": 1e6, "k_scale_range": (1e-8, 2e-8)}, 0.02),
    # logits in the thousands: float32 itself is near the tolerance here (the challenge's
    # float32 reference reaches 0.96 of it)
    "logits in the thousands": ((104, [1200, 300], 8, 2, 128, 16),
                                {"q_scale": 10.0, "k_scale_range": (0.2, 0.25),
                                 "large_logits": True}, 0.6),
}


@pytest.mark.parametrize("name", list(STRESS))
def test_precision_against_float64_beyond_the_functional_cases(module, challenge, name):
    positional, keywords, allowed = STRESS[name]
    case = challenge._case(*positional, **keywords)
    ratio = error_over_tolerance(run(module, case), case)
    assert ratio <= allowed, (name, ratio)


# -- tile settings --------------------------------------------------------------------------------

VARIANTS = [
    {"block_n": 16, "chunk": 48},                      # many chunks, many merges
    {"block_n": 64, "chunk": 256, "stack": False},     # hi and lo as two dots
    {"block_n": 32, "chunk": 64, "index64": True},     # 64-bit cache offsets
    {"block_n": 128, "chunk": 1 << 20},                # every sequence in one chunk
]


INTERPRETED_WORK = 40_000     # batch x query heads x cached tokens


def attention_work(case) -> int:
    return case["batch"] * case["num_heads"] * case["max_blocks_per_seq"] * case["block_size"]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v[k]}" for k in v))
def test_tile_settings_are_correct_on_the_functional_cases(challenge, variant):
    module = load_module()
    module.CONFIG.update(variant)
    module.INTERPRETER_CONFIG.update(variant)
    cases = [challenge.generate_example_test()] + challenge.generate_functional_test()[:-1]
    if cases[0]["Q"].device.type == "cpu":
        # under the interpreter a 16-token tile over 32k tokens takes minutes: the cases up to
        # INTERPRETED_WORK still have many chunks and merges per sequence for every variant
        cases = [c for c in cases if attention_work(c) <= INTERPRETED_WORK]
    for i, case in enumerate(cases):
        ratio = error_over_tolerance(run(module, case), case)
        assert ratio <= 0.05, (i, ratio)
    counters = module._WORKSPACE[cases[0]["Q"].device][2]
    assert int(counters.abs().sum()) == 0           # every merge reset its counter


def test_the_chunking_plan(module):
    """Chunks are whole tiles; the heuristic gives a few hundred tokens a chunk on the
    performance case of an H100 (132 SMs) and stays within its bounds elsewhere."""
    module._SM_COUNT[0] = 132
    try:
        gpu = torch.device("cuda", 0)
        perf = module.plan(64, 8, 4, 128, 8192, gpu)
        assert perf["chunk"] % perf["block_n"] == 0 and 256 <= perf["chunk"] <= 1024
        assert perf["stack"] and perf["block_g"] == 8 and perf["block_d"] == 128
        small = module.plan(1, 1, 1, 8, 16, gpu)
        assert small["chunk"] == module.CONFIG["min_chunk"] and small["block_d"] == 16
        big = module.plan(256, 8, 8, 128, 32768, gpu)
        assert big["chunk"] == module.CONFIG["max_chunk"]
        wide = module.plan(4, 1, 64, 256, 4096, gpu)
        assert not wide["stack"] and wide["block_g"] == 64 and wide["num_warps"] >= 8
    finally:
        module._SM_COUNT.pop(0)
    assert math.isclose(module.LOG2E, 1 / math.log(2))
