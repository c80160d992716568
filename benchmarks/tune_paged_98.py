"""Compare build variants of challenge 98's CUDA reference in one GPU run: solution.cu built
with -D overrides of its PG_* macros (in parallel), each checked against float64 on every
functional case and then timed on the performance case by the harness's timer.

    python benchmarks/tune_paged_98.py --out benchmarks/results [--variant NAME ...]

writes ``tune_paged_98.json``. A variant with a wrong answer is reported, not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.tuning import build_all, fresh, time_rotated  # noqa: E402
from runner.catalog import find_challenge  # noqa: E402
from runner.loading import load_challenge  # noqa: E402
from runner.languages import cuda  # noqa: E402
from runner.timing import L2Flusher  # noqa: E402

SOLUTION = (Path(__file__).resolve().parent.parent / "challenges" / "hard"
            / "98_paged_int8_decode_attention" / "reference" / "solution.cu")
VARIANTS: Dict[str, List[str]] = {
    "default": [],
    "float32 FMA kernel (PG_NO_TC)": ["-DPG_NO_TC"],
    "chunk1024": ["-DPG_TC_CHUNK=1024"],
    "chunk3072": ["-DPG_TC_CHUNK=3072"],
    "chunk4096": ["-DPG_TC_CHUNK=4096"],
    "no L2 prefetch hint": ["-DPG_TC_L2PF=0"],
    "MINB3 (spills)": ["-DPG_TC_MINB=3"],
}


def float64_answer(challenge, case: Dict) -> torch.Tensor:
    args = fresh(case)
    args["Q"] = args["Q"].double()
    args["output"] = args["output"].double()
    challenge.reference_impl(**args)
    return args["output"]


def worst_error(challenge, solve: Callable[[Dict], None], cases: List[Dict],
                answers: List[torch.Tensor]) -> Dict:
    """The largest |error| / (atol + rtol |expected|) over every case (> 1 fails)."""
    worst, where = 0.0, None
    for i, (case, expected) in enumerate(zip(cases, answers)):
        args = fresh(case)
        args["output"].fill_(float("nan"))
        solve(args)
        torch.cuda.synchronize()
        got = args["output"].double()
        ratio = ((got - expected).abs() / (challenge.atol + challenge.rtol * expected.abs()))
        ratio = torch.where(torch.isfinite(got), ratio, torch.full_like(ratio, float("inf")))
        value = ratio.max().item()
        if value > worst:
            worst, where = value, i
    return {"worst_error_over_tolerance": worst, "worst_case": where}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per variant")
    parser.add_argument("--profile", action="store_true",
                        help="only run each variant twice on the performance case (for ncu "
                             "--launch-skip 1 --launch-count 1); no checks, no timing")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    device = torch.device("cuda")
    challenge = load_challenge(find_challenge("98"), device)
    names = args.variant or list(VARIANTS)
    build_all([(SOLUTION, VARIANTS[n]) for n in names], device)

    if args.profile:
        perf = challenge.generate_performance_test()
        for name in names:
            solve = cuda.load(SOLUTION, challenge, device, extra_flags=VARIANTS[name])
            for _ in range(2):
                solve(fresh(perf))
            torch.cuda.synchronize()
        return 0
    cases = challenge.generate_functional_test()
    answers = [float64_answer(challenge, case) for case in cases]
    perf = challenge.generate_performance_test()
    copies = [perf, fresh(perf)]           # 2 x ~500 MB: consecutive runs share nothing in L2
    nbytes = challenge.bytes_moved(perf)
    flusher = L2Flusher(device)
    rows = []
    for name in names:
        solve = cuda.load(SOLUTION, challenge, device, extra_flags=VARIANTS[name])
        row = dict(variant=name, flags=VARIANTS[name], **worst_error(challenge, solve, cases, answers))
        if row["worst_error_over_tolerance"] <= 1.0:
            row.update(time_rotated(solve, copies, nbytes, args.budget, flusher))
            print(f"{name:32s} {row['median_ms'] * 1e3:8.1f} us {row['gbps']:7.0f} GB/s  "
                  f"worst err/tol {row['worst_error_over_tolerance']:.3f}", flush=True)
        else:
            print(f"{name:32s} WRONG: err/tol {row['worst_error_over_tolerance']:.3g} "
                  f"on functional case {row['worst_case']}", flush=True)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_paged_98.json").write_text(json.dumps(
        {"device": torch.cuda.get_device_name(), "bytes": nbytes, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
