"""Each challenge's performance case against its memory floor: one table per challenge, in one
run on a GPU.

    python benchmarks/floors.py 96 97 98 --out benchmarks/results

For each challenge, on the grader's own performance case (seed 0, with as many rotated copies
as the grader uses, so that consecutive runs share nothing in L2):

- the floor: the faster of the read probe of ``runner/probe.py`` (the probe behind the
  grader's measured ceiling) over exactly the bytes the case must move and a read-write probe
  with the case's own share of writes (``bytes_written``), L2 flushed by reading; the rule
  ``submit`` reports against (``runner.devices.case_floor``). A device copy of the bytes (read
  half, write half; the second probe before v2 of the floor) is shown beside them, not used:
  its writes end as dirty lines in L2, which flatters a case that mostly reads;
- every reference solution of the challenge, the PyTorch reference and ``torch.compile`` of it,
  and for 96 the plain one-block-per-head CUDA kernel most public solutions use
  (``tests/harness_solutions/cuda_correct.cu``);

each checked against the reference's outputs with the challenge's own rule, then timed by the
harness's timer (CUDA events, L2 flushed by reading, copies rotated). Writes ``floors.json`` and
``floors.md`` (median, GB/s, % of the floor, speedup over the PyTorch reference).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.tuning import fresh, time_rotated  # noqa: E402
from runner import devices  # noqa: E402
from runner.buffers import directions_of  # noqa: E402
from runner.cases import case_bytes, copy_seed, performance_case  # noqa: E402
from runner.catalog import find_challenge, reference_folder  # noqa: E402
from runner.languages import backend, detect  # noqa: E402
from runner.loading import load_challenge  # noqa: E402
from runner.grader.plan import compare_output, reference_outputs, rotation_count  # noqa: E402
from runner.probe import copy_floor_ms, mixed_floor_ms, read_floor_ms  # noqa: E402
from runner.timing import L2Flusher  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASELINES = {"96": {"one block per head (tests/harness_solutions/cuda_correct.cu)":
                    REPO / "tests" / "harness_solutions" / "cuda_correct.cu"}}
PYTORCH_REFERENCE = "PyTorch reference"


def implementations(number: str, challenge, device) -> Dict[str, Callable[[Dict], None]]:
    """Name -> call(case): the PyTorch reference, its torch.compile'd form, the challenge's
    reference solutions and its baselines (all trusted code, in this process)."""
    compiled = torch.compile(challenge.reference_impl)
    impls = {PYTORCH_REFERENCE: lambda case: challenge.reference_impl(**case),
             "torch.compile(reference)": lambda case: compiled(**case)}
    folder = reference_folder(find_challenge(number))
    files = {f"{detect(p)} ({p.name})": p for p in sorted(folder.glob("solution.*"))}
    for name, path in {**files, **BASELINES.get(number, {})}.items():
        impls[name] = backend(detect(path)).load(path, challenge, device)
    return impls


def wrong_outputs(challenge, call, case: Dict, expected: Dict[str, torch.Tensor],
                  directions: Dict[str, str]) -> str:
    """'' when ``call`` on a fresh copy of ``case`` matches ``expected`` by the challenge's rule."""
    args = fresh(case)
    for name, direction in directions.items():
        if direction == "out" and args[name].is_floating_point():
            args[name].fill_(float("nan"))      # outputs poisoned; inout ones keep their contents
    call(args)
    torch.cuda.synchronize()
    problems = []
    for name, want in expected.items():
        cmp = compare_output(challenge, name, args[name].cpu(), want, case)
        if not cmp.passed:
            problems.append(cmp.describe(challenge.atol, challenge.rtol).splitlines()[0])
    return "; ".join(problems)


def measure_challenge(number: str, device, budget_s: float) -> Dict:
    challenge = load_challenge(find_challenge(number), device)
    directions = directions_of(challenge.get_solve_signature())
    first = performance_case(challenge, 0)
    nbytes = challenge.bytes_moved(first)
    copies = [first] + [performance_case(challenge, copy_seed(0, k))
                        for k in range(1, rotation_count(case_bytes(first), device))]
    expected = reference_outputs(challenge, first, directions)
    written = challenge.bytes_written(first) or 0
    floors = {"read": read_floor_ms(device, nbytes),
              f"read-write ({written / 2**20:.1f} MiB written)": mixed_floor_ms(device, nbytes, written)}
    floor_ms = min(floors.values())
    floors["copy, not used"] = copy_floor_ms(device, nbytes)
    flusher = L2Flusher(device)
    rows: List[Dict] = []
    for name, call in implementations(number, challenge, device).items():
        t0 = time.perf_counter()
        wrong = wrong_outputs(challenge, call, first, expected, directions)
        row = {"impl": name}
        if wrong:
            row["error"] = wrong[:300]
        else:
            row.update(time_rotated(call, copies, nbytes, budget_s, flusher))
            row["floor_fraction"] = floor_ms / row["median_ms"]
        rows.append(row)
        shown = (f"{row['median_ms'] * 1e3:9.1f} us {row['gbps']:7.0f} GB/s "
                 f"{100 * row['floor_fraction']:4.0f}% of the floor" if "median_ms" in row
                 else row["error"])
        print(f"{number} {name:58s} {shown}   ({time.perf_counter() - t0:.1f} s)", flush=True)
        torch.cuda.empty_cache()
    return {"challenge": number, "slug": find_challenge(number).slug, "bytes": nbytes,
            "params": {k: v for k, v in first.items() if isinstance(v, int)},
            "floors_ms": floors, "floor_ms": floor_ms, "rows": rows}


def markdown(results: Dict) -> str:
    lines = [f"On {results['device']}; torch {results['torch']}; medians of CUDA-event times "
             f"with L2 flushed by reading and inputs rotated; the floor is the read probe over "
             f"the bytes the case moves or a read-write probe with the case's share of writes, "
             f"whichever is faster (the floor `submit` reports against; the copy beside them is "
             f"not used).", ""]
    for ch in results["challenges"]:
        floor_us = ch["floor_ms"] * 1e3
        ref = next((r for r in ch["rows"] if r["impl"] == PYTORCH_REFERENCE and "median_ms" in r), None)
        lines += [f"### {ch['slug']} ({', '.join(f'{k}={v}' for k, v in ch['params'].items())}; "
                  f"{ch['bytes'] / 2**20:.1f} MiB)", "",
                  "| implementation | median | GB/s | % of the floor | speedup vs PyTorch reference |",
                  "| --- | ---: | ---: | ---: | ---: |",
                  f"| the floor ({', '.join(f'{k} {v * 1e3:.1f} us' for k, v in ch['floors_ms'].items())}) "
                  f"| {floor_us:.1f} us | {ch['bytes'] / ch['floor_ms'] / 1e6:,.0f} | 100% | |"]
        for row in ch["rows"]:
            if "median_ms" not in row:
                lines.append(f"| {row['impl']} | wrong: {row['error']} | | | |")
                continue
            speedup = f"{ref['median_ms'] / row['median_ms']:.1f}x" if ref else ""
            lines.append(f"| {row['impl']} | {row['median_ms'] * 1e3:.1f} us | {row['gbps']:,.0f} "
                         f"| {100 * row['floor_fraction']:.0f}% | {speedup} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("challenges", nargs="*", default=["96", "97", "98"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per row")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    results = {"device": devices.describe(device), "torch": torch.__version__,
               "python": platform.python_version(),
               "challenges": [measure_challenge(n, device, args.budget) for n in args.challenges]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floors.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "floors.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
