"""Submit solutions as a user would, in several ways, and record what the grader's trust checks
saw: the verdict, the in-sandbox median, the grader's own clock per call (and their ratio), the
fraction of the measured ceiling. For the device notes of the trust and sandbox work:

    python benchmarks/trust_check.py 96:challenges/medium/96_int8_kv_cache_attention/reference/solution.cu \\
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
sys.path.insert(0, str(REPO))


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
            "clock_agrees": clock.get("agrees"), "timing_mode": sol.get("mode"),
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
    parser.add_argument("--summary", action="store_true",
                        help="a table of every run at the end, each clock ratio against the band")
    args = parser.parse_args(argv)
    rows = []
    with args.out.open("a") as out:
        for _ in range(args.repeat):
            for run in args.runs:
                number, solution = run.split(":", 1)
                for mode in args.modes.split(","):
                    row = submit(number, Path(solution), mode, args.extra.split())
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{number} {Path(solution).name} [{mode}] {row['verdict']} "
                          f"median {row['median_us'] or 0:.1f} us, clock {row['clock_us'] or 0:.1f} us "
                          f"(x{row['clock_ratio'] or 0:.2f}), floor {row['floor_fraction'] or 0:.2f} "
                          f"{row['message'][:200]} ({row['seconds']} s)", flush=True)
    if args.summary:
        summary(rows)
    return 0


def summary(rows) -> None:
    """Every run's verdict, median, clock and ratio, and the ones a reader must look at: an
    accepted run whose clock is outside the band (or that a leaderboard would hold), a forger
    that was not rejected."""
    from runner.policy import CLOCK_BAND

    print(f"\n{'run':58s} {'verdict':14s} {'mode':11s} {'median':>9s} {'clock':>9s} "
          f"{'ratio':>6s} calls/lengths")
    over, forgers = [], []
    for r in rows:
        name = f"{r['challenge']}:{r['solution']}"
        clock = r.get("clock") or {}
        print(f"{name[-58:]:58s} {str(r['verdict']):14s} {str(r.get('timing_mode')):11s} "
              f"{r['median_us'] or 0:8.1f}u {r['clock_us'] or 0:8.1f}u "
              f"{r['clock_ratio'] or 0:6.2f} {clock.get('calls')}/{clock.get('lengths')}"
              f"{' null clipped' if clock.get('null_clipped') else ''}")
        if "forged" in r["solution"]:
            if r["verdict"] not in ("rejected", "runtime_error"):
                forgers.append(name)
        elif r["verdict"] != "accepted" or (r["clock_ratio"] or 0) > 1 + CLOCK_BAND:
            over.append(name)
    print(f"ratio_over_band (or not accepted): {over}")
    print(f"forgers_not_rejected: {forgers}")


if __name__ == "__main__":
    sys.exit(main())
