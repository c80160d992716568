"""Compare launch/tiling variants of our challenge-96 kernels in one GPU run, with the same
timer as the benchmark: CUDA variants are solution.cu built with -D overrides of its KV_*
macros (built in parallel), Triton variants are overrides of solution.triton.py's CONFIG.

    python benchmarks/tune_attention_96.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.attention_96 import measure  # noqa: E402
from benchmarks.attention_common import REFERENCE_DIR, challenge_96  # noqa: E402
from benchmarks.tuning import ConfiguredModule, build_all  # noqa: E402
from runner.languages import cuda  # noqa: E402
from runner.timing import L2Flusher  # noqa: E402

SHAPES = [(32, 8192, 128), (1, 32768, 128), (32, 1024, 128), (64, 32768, 256), (8, 4097, 64)]
CUDA_VARIANTS = {
    "base": [],
    "MINB2": ["-DKV_MINB=2"],
    "LOAD1": ["-DKV_LOAD=1"],
    "interleave": ["-DKV_INTERLEAVE=1"],
    "interleave_LOAD1": ["-DKV_INTERLEAVE=1", "-DKV_LOAD=1"],
    "interleave_MINB2_T8": ["-DKV_INTERLEAVE=1", "-DKV_MINB=2", "-DKV_T=8"],
    "interleave_WAVES2": ["-DKV_INTERLEAVE=1", "-DKV_WAVES=2"],
    "interleave_MINB5": ["-DKV_INTERLEAVE=1", "-DKV_MINB=5"],
    "interleave_NT256_MINB2": ["-DKV_INTERLEAVE=1", "-DKV_NT=256", "-DKV_MINB=2"],
}
# Probes: solution.cu with the math of each step removed (wrong answers, timed unchecked), to
# show what the memory system gives this exact access pattern and grid.
READ_ONLY_STEP = """    constexpr int W = VEC / 4;
#pragma unroll
    for (int j = 0; j < T; ++j)
#pragma unroll
        for (int w = 0; w < W; ++w)
            acc[w] += __uint_as_float(((cur.k[j][w] ^ cur.v[j][w]) & 0x007fffffu) | 0x3f800000u)
                      * (cur.ks[j] + cur.vs[j]);
    l += 1.0f;
    m = 0.0f;
    return;
"""
PROBES = {"probe_read_only": [], "probe_read_only_interleave": ["-DKV_INTERLEAVE=1"],
          "probe_read_only_interleave_LOAD1": ["-DKV_INTERLEAVE=1", "-DKV_LOAD=1"]}
TRITON_VARIANTS = {
    "base": {},
    "interleave": {"interleave": True},
    "interleave_warps4_tile1024_pps4": {"interleave": True, "num_warps": 4, "tile_words": 1024,
                                        "programs_per_sm": 4},
    "stages3": {"num_stages": 3},
    "interleave_stages3": {"interleave": True, "num_stages": 3},
    "warps4_tile1024": {"num_warps": 4, "tile_words": 1024},
    "interleave_warps4_tile2048_stages2": {"interleave": True, "num_warps": 4, "tile_words": 2048,
                                           "num_stages": 2},
}


def read_only_source(folder: Path) -> Path:
    source = (REFERENCE_DIR / "solution.cu").read_text()
    anchor = "    constexpr int W = VEC / 4;\n    float s[T];"
    assert anchor in source, "kv_consume changed: update READ_ONLY_STEP's anchor"
    path = folder / "probe_read_only.cu"
    path.write_text(source.replace(anchor, READ_ONLY_STEP + "    float s[T];", 1))
    return path


def cuda_calls(challenge, device, folder: Path):
    """(name, call, checked) per CUDA variant and probe."""
    path, probe = REFERENCE_DIR / "solution.cu", read_only_source(folder)
    builds = [(path, flags) for flags in CUDA_VARIANTS.values()]
    builds += [(probe, flags) for flags in PROBES.values()]
    build_all(builds, device)
    for name, flags in CUDA_VARIANTS.items():
        yield f"cuda {name}", cuda.load(path, challenge, device, extra_flags=flags), True
    for name, flags in PROBES.items():
        yield f"cuda {name}", cuda.load(probe, challenge, device, extra_flags=flags), False


def triton_calls():
    reference = ConfiguredModule(REFERENCE_DIR / "solution.triton.py", "tuned_triton_96")
    for name, override in TRITON_VARIANTS.items():
        def call(case, override=override):
            reference.use(override).solve(**{k: case[k] for k in ("Q", "K_int8", "V_int8", "k_scale", "v_scale",
                                                  "output", "num_heads", "seq_len", "head_dim")})
        yield f"triton {name}", call, True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--budget", type=float, default=0.4)
    parser.add_argument("--only", choices=["cuda", "triton"], default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    challenge = challenge_96(device)
    flusher = L2Flusher(device)
    sources = {"cuda": lambda: cuda_calls(challenge, device, args.out), "triton": triton_calls}
    rows = []
    for kind, make in sources.items():
        if args.only and kind != args.only:
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        for name, call, checked in make():
            cells = []
            for shape in SHAPES:
                row = dict(measure(challenge, call, shape, device, flusher, args.budget, checked),
                           variant=name)
                rows.append(row)
                cells.append(f"{row['median_ms'] * 1e3:7.1f}" if "median_ms" in row else row["error"])
            print(f"{name:24s} " + " ".join(cells), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_attention_96.json").write_text(json.dumps(
        {"device": torch.cuda.get_device_name(), "shapes": SHAPES, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
