"""Compare launch/tiling variants of our challenge-96 kernels in one GPU run, with the same
timer as the benchmark: CUDA variants are solution.cu built with -D overrides of its KV_*
macros (built in parallel), Triton variants are overrides of solution.triton.py's CONFIG.

    python benchmarks/tune_attention_96.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.attention_96 import measure  # noqa: E402
from benchmarks.attention_common import REFERENCE_DIR, challenge_96  # noqa: E402
from runner.languages import cuda, nvcc  # noqa: E402
from runner.timing import L2Flusher  # noqa: E402

SHAPES = [(32, 8192, 128), (1, 32768, 128), (32, 1024, 128), (64, 32768, 256), (8, 4097, 64)]
CUDA_VARIANTS = {
    "base": [],
    "async_T2_S4_B4": ["-DKV_ASYNC=1", "-DKV_T=2", "-DKV_STAGES=4", "-DKV_MINB=4"],
    "async_T2_S4_B5": ["-DKV_ASYNC=1", "-DKV_T=2", "-DKV_STAGES=4", "-DKV_MINB=5"],
    "async_T1_S8_B4": ["-DKV_ASYNC=1", "-DKV_T=1", "-DKV_STAGES=8", "-DKV_MINB=4"],
    "async_T2_S3_B6": ["-DKV_ASYNC=1", "-DKV_T=2", "-DKV_STAGES=3", "-DKV_MINB=6"],
    "async_T4_S3_B3": ["-DKV_ASYNC=1", "-DKV_T=4", "-DKV_STAGES=3", "-DKV_MINB=3"],
    "async_T2_S6_B3": ["-DKV_ASYNC=1", "-DKV_T=2", "-DKV_STAGES=6", "-DKV_MINB=3"],
    "async_T1_S6_B8": ["-DKV_ASYNC=1", "-DKV_T=1", "-DKV_STAGES=6", "-DKV_MINB=8"],
    "async_T2_S4_NT256_B2": ["-DKV_ASYNC=1", "-DKV_T=2", "-DKV_STAGES=4", "-DKV_NT=256", "-DKV_MINB=2"],
    "async_T1_S4_B8": ["-DKV_ASYNC=1", "-DKV_T=1", "-DKV_STAGES=4", "-DKV_MINB=8"],
}
TRITON_VARIANTS = {
    "base": {},
    "pps12": {"programs_per_sm": 12},
    "pps16_split8k": {"programs_per_sm": 16, "min_split_bytes": 8192},
    "stages2": {"num_stages": 2},
}


def cuda_calls(challenge, device):
    path = REFERENCE_DIR / "solution.cu"
    capability = torch.cuda.get_device_capability(device)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda flags: nvcc.build(path, capability, (), flags), CUDA_VARIANTS.values()))
    for name, flags in CUDA_VARIANTS.items():
        yield f"cuda {name}", cuda.load(path, challenge, device, extra_flags=flags)


def triton_calls():
    spec = importlib.util.spec_from_file_location("tuned_triton_96", REFERENCE_DIR / "solution.triton.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = dict(module.CONFIG)
    for name, override in TRITON_VARIANTS.items():
        def call(case, override=override):
            module.CONFIG.clear()
            module.CONFIG.update(defaults, **override)
            module.solve(**{k: case[k] for k in ("Q", "K_int8", "V_int8", "k_scale", "v_scale",
                                                  "output", "num_heads", "seq_len", "head_dim")})
        yield f"triton {name}", call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--budget", type=float, default=0.4)
    parser.add_argument("--only", choices=["cuda", "triton"], default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    challenge = challenge_96(device)
    flusher = L2Flusher(device)
    sources = {"cuda": lambda: cuda_calls(challenge, device), "triton": triton_calls}
    rows = []
    for kind, make in sources.items():
        if args.only and kind != args.only:
            continue
        for name, call in make():
            cells = []
            for shape in SHAPES:
                row = dict(measure(challenge, call, shape, device, flusher, args.budget), variant=name)
                rows.append(row)
                cells.append(f"{row['median_ms'] * 1e3:7.1f}" if "median_ms" in row else row["error"])
            print(f"{name:24s} " + " ".join(cells), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_attention_96.json").write_text(json.dumps(
        {"device": torch.cuda.get_device_name(), "shapes": SHAPES, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
