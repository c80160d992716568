"""The judge on a GPU machine, end to end: start ``run_challenge.py serve`` (SQLite, one worker
per local GPU), send a correct, a wrong, a crashing and a hanging CUDA solution of challenge
96 through a WebSocket client written the way LeetGPU's public client is, and print each one's
statuses and final verdict.

    python benchmarks/judge_gpu_demo.py [--time-limit 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket   # websocket-client, as LeetGPU's scripts/run_challenge.py uses

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS = {
    "correct": REPO / "tests" / "solutions" / "cuda_correct.cu",
    "wrong": REPO / "tests" / "solutions" / "cuda_wrong.cu",
    "crashing": REPO / "tests" / "corpus" / "illegal_address.cu",
    "hanging": REPO / "tests" / "corpus" / "gpu_hang.cu",
}
TERMINAL = {"success", "error", "timeout", "oom", "interrupted"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the judge did not become healthy")


def submit(base: str, path: Path, action: str) -> dict:
    ws = websocket.create_connection(base.replace("http", "ws", 1) + "/api/v1/ws/submit",
                                     timeout=600)
    ws.send(json.dumps({"action": action, "token": "", "submission": {
        "files": [{"name": "solution.cu", "content": path.read_text()}],
        "language": "cuda", "accelerator": "H100", "mode": "accelerated", "public": False,
        "challengeCode": (REPO / "challenges/medium/96_int8_kv_cache_attention/challenge.py").read_text()}}))
    statuses = []
    while True:
        msg = json.loads(ws.recv())
        statuses.append(msg["status"])
        if msg["status"] in TERMINAL:
            ws.close()
            output = msg.get("output")
            return {"statuses": statuses, "terminal": msg["status"],
                    "verdict": output.get("verdict") if isinstance(output, dict) else None,
                    "message": (output.get("message") if isinstance(output, dict) else output)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--action", default="submit")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", choices=sorted(SUBMISSIONS), action="append",
                        help="send only these submissions")
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in SUBMISSIONS.items() if not args.only or k in args.only}
    data = Path(tempfile.mkdtemp(prefix="judge-demo-"))
    config = data / "judge.yaml"
    config.write_text(f"accelerators:\n  H100: [\"NVIDIA H100 80GB HBM3\"]\nworkers: auto\n"
                      f"limits:\n  time_limit_s: {args.time_limit}\n  watchdog_margin_s: 10\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve", "--port",
                               str(port), "--config", str(config), "--data-dir", str(data / "store")],
                              cwd=REPO, stdout=open(data / "serve.log", "w"), stderr=subprocess.STDOUT)
    results = {}
    try:
        wait_healthy(base)
        for name, path in chosen.items():
            t0 = time.monotonic()
            results[name] = dict(submit(base, path, args.action), seconds=round(time.monotonic() - t0, 1))
            print(f"{name:9s} {results[name]['terminal']:8s} {results[name]['verdict']}: "
                  f"{str(results[name]['message'])[:140]}  ({results[name]['seconds']} s; "
                  f"statuses {' > '.join(dict.fromkeys(results[name]['statuses']))})", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "judge_gpu_demo.json").write_text(json.dumps(results, indent=1))
            (args.out / "judge_serve.log").write_text((data / "serve.log").read_text()[-20000:])
    expected = {"correct": "accepted", "wrong": "wrong_answer", "crashing": "runtime_error",
                "hanging": "time_limit_exceeded"}
    return 0 if all(results.get(k, {}).get("verdict") == expected[k] for k in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
