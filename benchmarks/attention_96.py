"""Challenge 96 on a GPU: every reference solution, the PyTorch reference and its
torch.compile'd form, and the plain one-block-per-head CUDA kernel most public solutions use,
timed by the harness's own timer (CUDA events, read-based L2 flush, inputs rotated across
independent copies, repeats until the mean is within 1%), on the performance case and a sweep
of shapes, each against the read floor of the same bytes (the grader's read probe).

    python benchmarks/attention_96.py --out benchmarks/results

writes ``attention_96.json`` (every measurement), ``attention_96.md`` (the tables) and, when
matplotlib is installed, ``attention_96.png`` (``benchmarks/plot_attention_96.py`` redraws it
from the JSON anywhere). Each implementation is checked against float64 on each shape before
it is timed; a wrong one is reported, not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.attention_common import (  # noqa: E402
    PYTORCH_REFERENCE, challenge_96, implementations, mismatches, random_case)
from runner import devices  # noqa: E402
from runner.cases import case_bytes  # noqa: E402
from runner.grader.plan import rotation_count  # noqa: E402
from benchmarks.tuning import time_rotated  # noqa: E402
from runner.languages import backend  # noqa: E402
from runner.probe import read_floor_ms  # noqa: E402
from runner.timing import L2Flusher  # noqa: E402

FLOOR = "read floor (the grader's read probe, same bytes)"
BASELINE = "one block per head (tests/harness_solutions/cuda_correct.cu)"
BASELINE_FILE = (Path(__file__).resolve().parent.parent / "tests" / "harness_solutions"
                 / "cuda_correct.cu")

PERF_SHAPE = (32, 8192, 128)
SEQ_SWEEP = [(32, s, 128) for s in (128, 512, 1024, 2048, 4096, 8192, 16384, 32768)]
SHAPE_SWEEP = [(1, 32768, 128), (8, 4097, 64), (64, 128, 128), (64, 7, 256), (64, 32768, 256),
               (8, 32768, 8), (1, 1, 128)]


def measure(challenge, call, shape: Tuple[int, int, int], device, flusher, budget_s: float,
            check: bool = True) -> Dict:
    first = random_case(*shape, device, seed=1)
    call(first)
    torch.cuda.synchronize()
    wrong = mismatches(challenge, first) if check else 0
    row = {"shape": list(shape), "bytes": challenge.bytes_moved(first)}
    if wrong:
        return dict(row, error=f"{wrong} wrong outputs")
    copies = [first] + [random_case(*shape, device, seed=1 + k)
                        for k in range(1, rotation_count(case_bytes(first), device))]
    return dict(row, **time_rotated(call, copies, row["bytes"], budget_s, flusher))


def run(budget_s: float) -> Dict:
    device = torch.device("cuda")
    challenge = challenge_96(device)
    impls = implementations(challenge, device)
    impls[BASELINE] = backend("cuda").load(BASELINE_FILE, challenge, device)
    flusher = L2Flusher(device)
    name = devices.describe(device)
    peak = devices.peak_for(name)
    peak_gbps = peak.dram_gbps if peak else devices.measured_copy_gbps(device)
    shapes = list(dict.fromkeys([PERF_SHAPE] + SEQ_SWEEP + SHAPE_SWEEP))
    rows: List[Dict] = []
    for impl, call in impls.items():
        for shape in shapes:
            t0 = time.perf_counter()
            row = dict(measure(challenge, call, shape, device, flusher, budget_s), impl=impl)
            rows.append(row)
            shown = (f"{row['median_ms'] * 1e3:9.1f} us {row['gbps']:7.0f} GB/s"
                     if "median_ms" in row else row["error"])
            print(f"{impl:32s} {str(shape):18s} {shown}   ({time.perf_counter() - t0:.1f} s)",
                  flush=True)
            torch.cuda.empty_cache()
    for shape in shapes:      # the floor: the grader's read probe over the same bytes
        nbytes = next((r["bytes"] for r in rows if r["shape"] == list(shape)), None)
        if nbytes:
            floor_ms = read_floor_ms(device, nbytes)
            rows.append({"impl": FLOOR, "shape": list(shape), "bytes": nbytes, "median_ms": floor_ms,
                         "min_ms": floor_ms, "gbps": nbytes / (floor_ms / 1e3) / 1e9})
    return {"device": name, "peak_gbps": peak_gbps,
            "peak_source": f"{peak.name} datasheet" if peak else "measured copy bandwidth",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "perf_shape": list(PERF_SHAPE), "seq_sweep": [list(s) for s in SEQ_SWEEP],
            "rows": rows}


def _find(results: Dict, impl: str, shape) -> Dict:
    return next((r for r in results["rows"] if r["impl"] == impl and r["shape"] == list(shape)),
                {"error": "not run"})


def markdown(results: Dict) -> str:
    impls = list(dict.fromkeys(r["impl"] for r in results["rows"]))
    peak = results["peak_gbps"]
    ref = _find(results, PYTORCH_REFERENCE, results["perf_shape"])
    h, s, d = results["perf_shape"]
    lines = [f"Challenge 96, performance case ({h} heads x {s} tokens x {d} dims, "
             f"{ref['bytes'] / 2**20:.1f} MiB moved) on {results['device']} "
             f"(peak {peak:.0f} GB/s, {results['peak_source']}); torch {results['torch']}, "
             f"median of CUDA-event times with L2 flushed and inputs rotated.", "",
             "| implementation | median | min | GB/s | % of peak | % of the floor | speedup vs PyTorch reference |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    floor = _find(results, FLOOR, results["perf_shape"])
    for impl in impls:
        row = _find(results, impl, results["perf_shape"])
        if "median_ms" not in row:
            lines.append(f"| {impl} | {row['error']} | | | | | |")
            continue
        of_floor = (f"{100 * floor['median_ms'] / row['median_ms']:.0f}%"
                    if "median_ms" in floor else "")
        lines.append(f"| {impl} | {row['median_ms'] * 1e3:.1f} us | {row['min_ms'] * 1e3:.1f} us "
                     f"| {row['gbps']:,.0f} | {100 * row['gbps'] / peak:.0f}% | {of_floor} "
                     f"| {ref['median_ms'] / row['median_ms']:.1f}x |")
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in results["rows"]))
    lines += ["", "Median time in us per shape (heads x seq_len x head_dim):", "",
              "| shape | " + " | ".join(impls) + " |", "| --- |" + " ---: |" * len(impls)]
    for shape in shapes:
        cells = []
        for impl in impls:
            row = _find(results, impl, shape)
            cells.append(f"{row['median_ms'] * 1e3:.1f}" if "median_ms" in row else row["error"])
        lines.append(f"| {'x'.join(map(str, shape))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per measurement")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    results = run(args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_96.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "attention_96.md").write_text(table)
    print(table)
    try:
        from benchmarks.plot_attention_96 import plot
        plot(results, args.out / "attention_96.png")
    except ImportError as exc:
        print(f"no chart ({exc}); run benchmarks/plot_attention_96.py where matplotlib is installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
