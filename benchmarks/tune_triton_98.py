"""Time launch/tiling variants of challenge 98's Triton reference on its performance case.

Each variant is an override of the CONFIG of
challenges/hard/98_paged_int8_decode_attention/reference/solution.triton.py (tile length, warps,
pipeline stages, chunk length, stacked hi/lo rows, inline-PTX conversion).
Every variant's output is checked against the challenge's reference first; then it is timed
with triton.testing.do_bench (median; do_bench flushes L2 by writing a buffer, so absolute times
are a little higher than the harness's, see README "Timing"). Needs an NVIDIA GPU.

    python benchmarks/tune_triton_98.py                      # every variant
    python benchmarks/tune_triton_98.py default chunk512     # some of them
    python benchmarks/tune_triton_98.py --list
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "challenges/hard/98_paged_int8_decode_attention/reference/solution.triton.py"

# name -> CONFIG override
VARIANTS = {
    "default": {},
    "stages2": {"num_stages": 2},
    "stages4": {"num_stages": 4},
    "bn32_w2": {"block_n": 32, "num_warps": 2},
    "bn64_w2": {"block_n": 64, "num_warps": 2},
    "bn128": {"block_n": 128},
    "bn128_w8": {"block_n": 128, "num_warps": 8},
    "chunk256": {"chunk": 256},
    "chunk512": {"chunk": 512},
    "chunk1024": {"chunk": 1024},
    "chunk2048": {"chunk": 2048},
    "no_stack": {"stack": False},      # hi and lo as two dots of 16 rows each
    "no_asm": {"asm_cvt": False},      # Triton's own int8 -> fp16 conversion
    "early_k": {"early_k": True},      # K converted before shared memory, like V
    "early_k_bn128_w8": {"early_k": True, "block_n": 128, "num_warps": 8},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help=f"names from: {', '.join(VARIANTS)}")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--rep", type=int, default=200, help="do_bench's rep (ms)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.list:
        for name, override in VARIANTS.items():
            print(f"{name:18s} {override}")
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; --list shows them")

    import os

    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("tune_triton_98.py times the compiled kernels: unset TRITON_INTERPRET")
    import torch
    if not torch.cuda.is_available():
        sys.exit("tune_triton_98.py needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    import triton.testing

    sys.path.insert(0, str(ROOT))
    from benchmarks.tuning import ConfiguredModule
    from runner.catalog import find_challenge
    from runner.loading import load_challenge
    from runner.devices import peak_for

    device = torch.device("cuda")
    challenge = load_challenge(find_challenge("98"), device)
    case = challenge.generate_performance_test()
    expected = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    challenge.reference_impl(**expected)
    expected = expected["output"]
    nbytes = challenge.bytes_moved(case)
    name = torch.cuda.get_device_name(device)
    peak = peak_for(name)
    reference = ConfiguredModule(SOLUTION, "triton_98_tuned")

    print(f"{name}; perf case: batch {case['batch']}, {case['num_heads']} q heads over "
          f"{case['num_kv_heads']} kv heads, head_dim {case['head_dim']}, block_size "
          f"{case['block_size']}, {int(case['context_lens'].sum()):,} tokens, "
          f"{nbytes / 1e6:.1f} MB; floor {nbytes / (peak.dram_gbps * 1e3) if peak else 0:.1f} us")
    header = f"{'variant':18s} {'median us':>10s} {'GB/s':>7s} {'% peak':>7s} {'max err':>9s}  plan"
    print(header)
    print("-" * len(header))
    rows = []
    for variant in args.variants or list(VARIANTS):
        module = reference.use(VARIANTS[variant])
        longest = case["max_blocks_per_seq"] * case["block_size"]
        group = case["num_heads"] // case["num_kv_heads"]
        plan = module.plan(case["batch"], case["num_kv_heads"], group, case["head_dim"], longest,
                           device, cache_elements=case["k_cache"].numel())
        out = case["output"]
        try:
            out.fill_(float("nan"))
            module.solve(**case)
            torch.cuda.synchronize()
            err = (out - expected).abs()
            tol = challenge.atol + challenge.rtol * expected.abs()
            ok = bool(torch.isfinite(out).all() and (err <= tol).all())
            max_err = float(err.max())
            ms = triton.testing.do_bench(lambda: module.solve(**case), warmup=50, rep=args.rep,
                                         return_mode="median")
        except Exception as exc:  # noqa: BLE001 (a variant that fails to compile: say so, go on)
            first = (str(exc).splitlines() or [""])[0][:100]
            print(f"{variant:18s} failed: {type(exc).__name__}: {first}")
            rows.append({"variant": variant, "error": str(exc)[:500]})
            continue
        gbps = nbytes / (ms * 1e-3) / 1e9
        share = f"{100 * gbps / peak.dram_gbps:6.1f}%" if peak else "      ?"
        mark = "" if ok else "  WRONG"
        brief = {k: plan[k] for k in ("block_n", "chunk", "num_warps", "num_stages", "stack",
                                      "use_asm", "early_k")}
        print(f"{variant:18s} {ms * 1e3:10.1f} {gbps:7.0f} {share} {max_err:9.2e}  {brief}{mark}",
              flush=True)
        rows.append({"variant": variant, "median_us": ms * 1e3, "gbps": gbps,
                     "max_abs_error": max_err, "correct": ok, "plan": plan})
    reference.reset()
    if args.json:
        args.json.write_text(json.dumps({"device": name, "bytes": nbytes, "rows": rows}, indent=1))
    return 0 if all(r.get("correct") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
