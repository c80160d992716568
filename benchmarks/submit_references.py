"""Submit every reference solution of the chosen challenges exactly as a user would
(``run_challenge.py N --solution F --action submit --json``: sandboxed, all functional tests,
then the timed performance case) and write one markdown table per challenge.

    python benchmarks/submit_references.py 97 98 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner.catalog import find_challenge, reference_folder  # noqa: E402


def submit(number: str, solution: Path) -> Dict:
    done = subprocess.run([sys.executable, str(REPO / "run_challenge.py"), number, "--solution",
                           str(solution), "--action", "submit", "--json"],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"verdict": "no result", "message": (done.stderr or done.stdout)[-300:]}


def table(number: str, results: List[tuple]) -> str:
    device = next((r.get("device") for _, r in results if r.get("device")), "?")
    params = next((r["performance"]["params"] for _, r in results
                   if r.get("performance", {}).get("params")), {})
    lines = [f"Challenge {number}, `--action submit` of each reference solution on {device}; "
             f"performance case {params}.", "",
             "| solution | verdict | median | GB/s | % of peak | PyTorch reference | speedup |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results:
        perf = r.get("performance") or {}
        if not perf.get("timed"):
            lines.append(f"| {name} | {r['verdict']} | {r.get('message', '')[:80]} | | | | |")
            continue
        lines.append(f"| {name} | {r['verdict']} | {perf['solution']['median_ms'] * 1e3:.1f} us "
                     f"| {perf.get('gbps', 0):,.0f} | {100 * perf.get('bandwidth_fraction', 0):.0f}% "
                     f"| {perf['reference']['median_ms'] * 1e3:.1f} us | {perf['speedup']:.1f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("challenges", nargs="+", help="numbers or slugs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for query in args.challenges:
        info = find_challenge(query)
        folder = reference_folder(info)
        results = []
        for solution in sorted(folder.glob("solution.*")):
            result = submit(query, solution)
            results.append((solution.name, result))
            failed += result.get("verdict") != "accepted"
            print(f"{info.number} {solution.name}: {result.get('verdict')} {result.get('message', '')[:120]}",
                  flush=True)
        text = table(str(info.number), results)
        (args.out / f"submit_{info.number}_{info.slug}.md").write_text(text)
        print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
