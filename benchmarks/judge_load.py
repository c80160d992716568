"""Load and chaos for the judge (CPU workers, no GPU needed)::

    python benchmarks/judge_load.py --submissions 200 --clients 50 --kill-every 10
    python benchmarks/judge_load.py --redis-url redis://... --postgres-url postgresql://...   # a fleet

Starts a judge (the embedded one, or a fleet with ``--redis-url`` and ``--postgres-url``) with
CPU workers, sends ``--submissions`` from ``--clients`` concurrent LeetGPU-style WebSocket
clients (a correct, a wrong and a non-compiling solution of a tiny challenge, in turn) while a
worker is SIGKILLed every ``--kill-every`` seconds and replaced, then checks that every
submission reached exactly one terminal status with the right verdict and reports the queue
wait (admission to the claim that graded it; p50/p99) and the throughput. Everything runs on
loopback and stops by itself.

Exit code 0 when every check held. A submission that ends ``interrupted`` after every one of
its attempts lost its worker to the chaos is the retry budget doing its job, not a failure: it
is counted (``interrupted_after_retry_budget``), not listed as a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

RUNNER_ROOT = Path(__file__).resolve().parent.parent     # the repository: the judge runs from it

CHALLENGE = '''
import ctypes
import torch
from runner.challenge import ChallengeBase


class Challenge(ChallengeBase):
    def __init__(self):
        super().__init__(name="Vector Add", atol=1e-5, rtol=1e-5)

    def reference_impl(self, A, B, C, N):
        C.copy_(A + B)

    def get_solve_signature(self):
        return {"A": (ctypes.POINTER(ctypes.c_float), "in"),
                "B": (ctypes.POINTER(ctypes.c_float), "in"),
                "C": (ctypes.POINTER(ctypes.c_float), "out"), "N": (ctypes.c_int, "in")}

    def _case(self, n, seed):
        g = self.generator(seed)
        return {"A": self.to_device(torch.randn(n, generator=g)),
                "B": self.to_device(torch.randn(n, generator=g)),
                "C": torch.empty(n, device=self.device), "N": n}

    def generate_example_test(self):
        return self._case(4, 0)

    def generate_functional_test(self):
        return [self._case(n, k) for k, n in enumerate((1, 7, 256), 1)]

    def generate_performance_test(self):
        return self._case(1000, 99)
'''
SOLUTIONS = [
    ("accepted", "import torch\n\ndef solve(A, B, C, N):\n    torch.add(A, B, out=C)\n"),
    ("wrong_answer", "import torch\n\ndef solve(A, B, C, N):\n    torch.sub(A, B, out=C)\n"),
    ("compile_error", "def solve(A, B, C, N)\n    pass\n"),
]
TERMINAL = ("success", "error", "timeout", "oom", "interrupted")
MAX_ATTEMPTS = 3          # the first and max_retries (2) retries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def classify(expected: str, got: Optional[str], attempts: int, chaos: bool) -> str:
    """"right", "retry budget" (``interrupted`` after every attempt lost its worker to the
    chaos: expected, the client is told to send it again), or what is wrong."""
    if got == expected:
        return "right"
    if got == "interrupted" and chaos and attempts >= MAX_ATTEMPTS:
        return "retry budget"
    return f"verdict {got} after {attempts} attempt(s), expected {expected}"


class Harness:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        import yaml

        self.args, self.tmp = args, tmp
        (tmp / "challenges" / "easy" / "1_vector_add").mkdir(parents=True)
        (tmp / "challenges" / "easy" / "1_vector_add" / "challenge.py").write_text(CHALLENGE)
        self.client_tokens = [f"load-client-{k:03d}-{os.urandom(12).hex()}" for k in range(args.clients)]
        self.worker_token = "load-worker-" + os.urandom(16).hex()
        config: Dict[str, Any] = {
            "tokens": [{"name": f"client{k}", "roles": ["user"], "token": t}
                       for k, t in enumerate(self.client_tokens)]
                      + [{"name": "workers", "roles": ["worker"], "token": self.worker_token}],
            "challenges": [str(tmp / "challenges")],
            "accelerators": {"cpu": []}, "workers": "none",
            "limits": {"queue_capacity": 10_000, "max_in_flight": 10, "rate_limit": 10_000,
                       "time_limit_s": 60},
            "leases": {"lease_s": args.lease, "heartbeat_s": args.lease / 4,
                       "reap_interval_s": 0.25, "avoid_failed_worker_s": 2},
        }
        self.worker_extra: List[str] = []
        if args.redis_url:
            ns = "judge-load-" + os.urandom(4).hex()
            config["queue"] = {"backend": "dramatiq", "redis_url": args.redis_url, "namespace": ns,
                               "heartbeat_timeout_ms": int(args.lease * 1000),
                               "maintenance_chance": 100_000, "repair_interval_s": 1.0}
            self.worker_extra = ["--redis-url", args.redis_url, "--namespace", ns,
                                 "--heartbeat-timeout-ms", str(int(args.lease * 1000)),
                                 "--maintenance-chance", "100000"]
        if args.postgres_url:
            config["store"] = {"url": args.postgres_url}
        (tmp / "judge.yaml").write_text(yaml.safe_dump(config))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(RUNNER_ROOT), os.environ.get("PYTHONPATH")]))}
        self.api: Optional[subprocess.Popen] = None
        self.workers: Dict[str, subprocess.Popen] = {}
        self.kills = 0
        self._count = 0

    def start(self) -> None:
        import httpx

        log = open(self.tmp / "api.log", "ab")
        self.api = subprocess.Popen([sys.executable, str(RUNNER_ROOT / "run_challenge.py"), "serve",
                                     "--port", str(self.port), "--config", str(self.tmp / "judge.yaml"),
                                     "--data-dir", str(self.tmp / "data"), "--api-only",
                                     "--log-level", "warning"],
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:     # serving (its store answers); its workers start next
                if httpx.get(self.url + "/healthz", timeout=1).json().get("store") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        for _ in range(self.args.workers):
            self.start_worker()

    def start_worker(self) -> None:
        self._count += 1
        name = f"load{self._count}"
        log = open(self.tmp / f"worker-{name}.log", "ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "runner.judge.worker", "--url", self.url, "--accelerator", "cpu",
             "--cpu", name, "--name", name, "--challenges", str(self.tmp / "challenges"),
             "--lock-dir", str(self.tmp / "locks"), *self.worker_extra],
            env={**self.env, "JUDGE_WORKER_TOKEN": self.worker_token}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def chaos(self, stop: threading.Event) -> None:
        rng = random.Random(7)
        while not stop.wait(self.args.kill_every):
            name = rng.choice(sorted(self.workers))
            proc = self.workers.pop(name)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kills += 1
            self.start_worker()

    def close(self) -> None:
        for proc in list(self.workers.values()) + ([self.api] if self.api else []):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


def client(url: str, token: str, jobs: List[int], out: Dict[int, Dict[str, Any]],
           code: str) -> None:
    import websocket

    for k in jobs:
        expected, content = SOLUTIONS[k % len(SOLUTIONS)]
        msg = {"action": "run", "token": token,
               "submission": {"files": [{"name": "solution.pytorch.py", "content": content}],
                              "language": "pytorch", "accelerator": "cpu", "mode": "accelerated",
                              "public": False, "challengeCode": code},
               "submissionId": f"load-{k:05d}-{os.urandom(4).hex()}"}
        log: List[Dict[str, Any]] = []
        for _ in range(20):                     # reconnect and resume, as --remote does
            try:
                ws = websocket.create_connection(url.replace("http", "ws") + "/api/v1/ws/submit",
                                                 timeout=600)
                ws.send(json.dumps({**msg, "after": log[-1]["seq"] if log else -1}))
                while True:
                    data = json.loads(ws.recv())
                    log.append(data)
                    if data["status"] in TERMINAL:
                        break
                ws.close()
                break
            except Exception:  # noqa: BLE001 - a dropped connection: resume
                time.sleep(0.5)
        out[k] = {"expected": expected, "log": log, "id": msg["submissionId"], "token": token}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/judge_load.py",
                                description=__doc__.split("\n\n")[1].replace("``", "`"),
                                epilog=__doc__.split("\n\n")[2].replace("``", "`"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--submissions", type=int, default=200,
                   help="submissions to send in all (default 200)")
    p.add_argument("--clients", type=int, default=50,
                   help="concurrent WebSocket clients sharing them (default 50)")
    p.add_argument("--workers", type=int, default=3,
                   help="CPU workers grading them (default 3)")
    p.add_argument("--kill-every", type=float, default=5.0,
                   help="seconds between SIGKILLs of a random worker, each replaced at once "
                        "(default 5; 0: no chaos)")
    p.add_argument("--lease", type=float, default=3.0,
                   help="the judge's lease in seconds: how soon a killed worker's job is "
                        "retried (default 3)")
    p.add_argument("--redis-url", help="a fleet: Dramatiq on this Redis as the queue")
    p.add_argument("--postgres-url", help="a fleet: this PostgreSQL as the store")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)
    import httpx

    with tempfile.TemporaryDirectory(prefix="judge-load-") as tmp_name:
        h = Harness(args, Path(tmp_name))
        try:
            h.start()
            results: Dict[int, Dict[str, Any]] = {}
            shares = [list(range(c, args.submissions, args.clients)) for c in range(args.clients)]
            stop = threading.Event()
            chaos = threading.Thread(target=h.chaos, args=(stop,), daemon=True)
            start = time.monotonic()
            threads = [threading.Thread(target=client, args=(h.url, h.client_tokens[c], share,
                                                             results, CHALLENGE))
                       for c, share in enumerate(shares)]
            [t.start() for t in threads]
            if args.kill_every > 0:
                chaos.start()
            [t.join() for t in threads]
            wall = time.monotonic() - start
            stop.set()
            waits, problems, verdicts, attempts = [], [], {}, []
            exhausted = 0
            for _, r in sorted(results.items()):
                headers = {"Authorization": f"Bearer {r['token']}"}
                events = httpx.get(f"{h.url}/api/v1/submissions/{r['id']}/events", headers=headers,
                                   timeout=30).json()["events"]
                record = httpx.get(f"{h.url}/api/v1/submissions/{r['id']}", headers=headers,
                                   timeout=30).json()
                terminal = [e for e in events if e["status"] in TERMINAL]
                got = record.get("verdict")
                verdicts[got] = verdicts.get(got, 0) + 1
                attempts.append(record["attempts"])
                if len(terminal) != 1:
                    problems.append(f"{r['id']}: {len(terminal)} terminal events")
                outcome = classify(r["expected"], got, record["attempts"], args.kill_every > 0)
                if outcome == "retry budget":
                    exhausted += 1
                elif outcome != "right":
                    problems.append(f"{r['id']}: {outcome}")
                if record.get("started") and record.get("created"):
                    waits.append(record["started"] - record["created"])
            missing = args.submissions - len(results)
            if missing:
                problems.append(f"{missing} submissions got no result")
            summary = {
                "submissions": args.submissions, "clients": args.clients, "workers": args.workers,
                "backend": "fleet (PostgreSQL + Dramatiq/Redis)" if args.redis_url else "embedded (SQLite)",
                "worker_kills": h.kills, "wall_s": round(wall, 1),
                "throughput_per_s": round(len(results) / wall, 2),
                "queue_wait_p50_s": round(_percentile(waits, 0.5), 2),
                "queue_wait_p99_s": round(_percentile(waits, 0.99), 2),
                "queue_wait_mean_s": round(statistics.mean(waits), 2) if waits else None,
                "retried": sum(1 for a in attempts if a > 1),
                "interrupted_after_retry_budget": exhausted, "verdicts": verdicts,
                "problems": problems[:20], "ok": not problems,
            }
        finally:
            h.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
