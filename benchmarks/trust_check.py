"""Submit solutions as a user would, in several ways, and record what the grader's trust checks
saw: the verdict, the in-sandbox median, the grader's own clock per call (and their ratio), the
fraction of the measured ceiling. For the device notes of the trust and sandbox work:

    python benchmarks/trust_check.py 96:reference/int8_kv_cache_attention/solution.cu \\
        --modes jail,no-sandbox,old:/path/to/an/older/checkout --repeat 1 --out results.jsonl

``jail`` is the default grading; ``no-sandbox`` passes ``--no-sandbox``; ``old:ROOT`` runs
``ROOT/run_challenge.py`` (an older checkout, for before/after medians).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def submit(number: str, solution: Path, mode: str, extra) -> dict:
    root = REPO
    flags = []
    if mode == "no-sandbox":
        flags = ["--no-sandbox"]
    elif mode.startswith("old:"):
        root = Path(mode[4:]).resolve()
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(root / "run_challenge.py"), number, "--solution",
                           str(solution.resolve()), "--action", "submit", "--json", *flags, *extra],
                          capture_output=True, text=True, timeout=900, cwd=root)
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        result = {"verdict": "no result", "message": (done.stderr or done.stdout)[-2000:]}
    perf = result.get("performance") or {}
    sol = perf.get("solution") or {}
    clock = perf.get("clock") or {}
    return {"challenge": number, "solution": str(solution), "mode": mode,
            "verdict": result.get("verdict"), "message": (result.get("message") or "")[:400],
            "median_us": sol.get("median_ms", 0) * 1e3 if sol else None,
            "mean_us": sol.get("mean_ms", 0) * 1e3 if sol else None,
            "clock_us": clock.get("per_call_ms", 0) * 1e3 if clock else None,
            "clock_ratio": clock.get("ratio"), "clock_calls": clock.get("calls"),
            "clock": clock, "host_us": sol.get("host_us"),
            "headline": perf.get("headline"), "gbps": perf.get("gbps"),
            "floor_fraction": perf.get("floor_fraction"), "ceiling_gbps": perf.get("ceiling_gbps"),
            "reference_us": (perf.get("reference") or {}).get("median_ms", 0) * 1e3,
            "notes": result.get("notes"), "seconds": round(time.monotonic() - started, 1),
            "details": (result.get("details") or "")[-1500:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="CHALLENGE:SOLUTION")
    parser.add_argument("--modes", default="jail")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--extra", default="", help="more run_challenge.py flags, space-separated")
    args = parser.parse_args(argv)
    with args.out.open("a") as out:
        for _ in range(args.repeat):
            for run in args.runs:
                number, solution = run.split(":", 1)
                for mode in args.modes.split(","):
                    row = submit(number, Path(solution), mode, args.extra.split())
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{number} {Path(solution).name} [{mode}] {row['verdict']} "
                          f"median {row['median_us'] or 0:.1f} us, clock {row['clock_us'] or 0:.1f} us "
                          f"(x{row['clock_ratio'] or 0:.2f}), floor {row['floor_fraction'] or 0:.2f} "
                          f"{row['message'][:200]} ({row['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
