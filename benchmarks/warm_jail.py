"""What a pre-warmed jail saves, in one process (issue 28): 96's references graded with
``grade()`` in a cold jail, in a jail started first thing (``warm_start``, the CLI's way) and
in a jail parked beforehand (the judge's way), and what a CUDA context costs.

    python benchmarks/warm_jail.py [--repeat 3] [--action submit] [--device cuda]

For each language and mode: the seconds from the call of ``grade()`` (the hand-over, for a
parked jail) to its verdict; for a parked jail also how long parking took beforehand, with its
CUDA context made while parked and without (made by the grading). Then the CUDA context's own
cost: ``torch.empty(1, device="cuda")`` after torch's import, in a fresh interpreter. Prints a
table and writes ``--out``/warm_jail.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from runner.catalog import challenge_info  # noqa: E402
from runner.grader.grade import grade  # noqa: E402
from runner.grader.options import GradeOptions  # noqa: E402
from runner.sandbox import gpus, warm  # noqa: E402
from runner.sandbox.limits import Limits  # noqa: E402

CHALLENGE = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention"
REFERENCE = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention" / "reference"
FILES = {"cuda": "solution.cu", "triton": "solution.triton.py", "pytorch": "solution.pytorch.py"}
CONTEXT = ("import time, torch; t = time.perf_counter(); torch.empty(1, device='cuda'); "
           "torch.cuda.synchronize(); print(time.perf_counter() - t)")


def one(language: str, mode: str, action: str, device: torch.device) -> dict:
    parked, parking = None, None
    if mode.startswith("parked"):
        t = time.perf_counter()
        parked = warm.ParkedJail.start(str(device), Limits(), gpus.minor_of(device),
                                       preload=[language] if language == "triton" else [],
                                       gpu_warm=mode == "parked")
        assert parked.wait_parked(300), "the jail did not park"
        parking = time.perf_counter() - t
    t = time.perf_counter()
    result = grade(challenge_info(CHALLENGE), REFERENCE / FILES[language], language,
                   GradeOptions(action=action, device=device, parked=parked,
                                warm_start=mode == "early"))
    return {"language": language, "mode": mode, "verdict": result.verdict,
            "seconds": round(time.perf_counter() - t, 3),
            "parking_s": None if parking is None else round(parking, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--action", default="submit")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--languages", default="cuda,triton,pytorch")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    modes = ["cold", "early", "parked"] + (["parked-no-context"] if device.type == "cuda" else [])
    rows = []
    for _ in range(args.repeat):
        for language in args.languages.split(","):
            for mode in modes:
                row = one(language, mode, args.action, device)
                rows.append(row)
                print(json.dumps(row), flush=True)
    context = []
    if device.type == "cuda":
        for _ in range(3):
            done = subprocess.run([sys.executable, "-c", CONTEXT], capture_output=True, text=True,
                                  timeout=120)
            context.append(float(done.stdout.strip() or "nan"))
    print(f"\n{'language':8s} {'mode':18s} {'median s':>9s} {'parking s':>10s}  verdicts")
    for language in args.languages.split(","):
        for mode in modes:
            mine = [r for r in rows if r["language"] == language and r["mode"] == mode]
            parking = [r["parking_s"] for r in mine if r["parking_s"] is not None]
            print(f"{language:8s} {mode:18s} {statistics.median(r['seconds'] for r in mine):9.3f} "
                  f"{(statistics.median(parking) if parking else float('nan')):10.3f}  "
                  f"{sorted({r['verdict'] for r in mine})}")
    if context:
        print(f"a CUDA context (torch.empty after torch's import, fresh interpreter): "
              f"median {statistics.median(context):.3f} s of {context}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warm_jail.json").write_text(json.dumps({"rows": rows, "context_s": context},
                                                        indent=1))
    return 0 if all(r["verdict"] in ("accepted", "compiled") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
