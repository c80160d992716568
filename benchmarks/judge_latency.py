"""A verdict in seconds (issue 28): the judge on one GPU, from "picked up" to the verdict.

    python benchmarks/judge_latency.py [--repeat 5] [--queue 40] [--out DIR] [--no-prewarm]

Starts ``run_challenge.py serve`` (SQLite, one GPU worker: ``--gpu``, default 0) and sends
challenge 96 submissions through the WebSocket API the way LeetGPU's client does:

1. latency: ``--repeat`` submissions of each kind, one at a time, with ``--idle`` seconds
   between them (the worker parks its next job process and jail meanwhile: a warm worker):
   the CUDA reference (``cuda``: the same source each time, so its build comes from the cache;
   ``cuda_fresh``: a comment makes each one new, so nvcc runs each time), the Triton and
   PyTorch references, and a wrong answer (``wrong``). For each: p50 and p95 of the seconds
   from the "picked up by worker" event to the verdict, and from pickup to the first
   ``compiling`` and ``timing`` events;
2. throughput: ``--queue`` submissions (cuda, triton, pytorch and wrong in turn, shuffled)
   sent at once; gradings per GPU-minute = queue / (last verdict - first pickup) x 60.

Every verdict is checked (references accepted, the wrong answer wrong_answer). Prints a table
and the targets of issue 28 (CUDA <= 5 s, Triton <= 5 s, PyTorch <= 3 s, wrong <= 2.5 s p50;
>= 10 gradings per GPU-minute), and writes everything to ``--out``/judge_latency.json.
``--no-prewarm`` runs the same with cold job processes and jails (the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import websocket

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.judge_gpu_demo import free_port, stop_server, wait_healthy  # noqa: E402

REFERENCE = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention" / "reference"
KINDS = {   # name: (language, file name, path, expected verdict)
    "cuda": ("cuda", "solution.cu", REFERENCE / "solution.cu", "accepted"),
    "cuda_fresh": ("cuda", "solution.cu", REFERENCE / "solution.cu", "accepted"),
    "triton": ("triton", "solution.py", REFERENCE / "solution.triton.py", "accepted"),
    "pytorch": ("pytorch", "solution.py", REFERENCE / "solution.pytorch.py", "accepted"),
    "wrong": ("pytorch", "solution.py", REFERENCE.parent / "solutions/wrong/no_max.pytorch.py",
              "wrong_answer"),
}
TARGETS = {"cuda": 5.0, "triton": 5.0, "pytorch": 3.0, "wrong": 2.5}
TARGET_RATE = 10.0
TERMINAL = {"success", "error", "timeout", "oom", "interrupted"}


def content_of(kind: str) -> str:
    text = KINDS[kind][2].read_text()
    if kind == "cuda_fresh":                 # new content: no cached build
        text += f"\n// {uuid.uuid4().hex}\n"
    return text


def send(base: str, kind: str, accelerator: str, deadline_s: float) -> Dict[str, Any]:
    """One submission: its events (seconds since sent) until its terminal status."""
    language, name, _, expected = KINDS[kind]
    sid = f"latency-{kind}-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    events: List[Dict[str, Any]] = []
    out: Dict[str, Any] = {"kind": kind, "submissionId": sid, "expected": expected,
                           "events": events, "verdict": None}
    ws = websocket.create_connection(base.replace("http", "ws", 1) + "/api/v1/ws/submit",
                                     timeout=30)
    try:
        ws.send(json.dumps({"action": "submit", "token": "", "submissionId": sid, "submission": {
            "files": [{"name": name, "content": content_of(kind)}], "language": language,
            "accelerator": accelerator, "mode": "accelerated", "public": False,
            "challenge": "96"}}))
        while time.monotonic() - started < deadline_s:
            ws.settimeout(5.0)
            try:
                msg = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            t = time.monotonic() - started
            output = msg.get("output")
            events.append({"t": round(t, 3), "status": msg.get("status"),
                           "output": output if isinstance(output, str) else None})
            if msg.get("status") in TERMINAL:
                if isinstance(output, dict):
                    out["verdict"] = output.get("verdict")
                    out["message"] = str(output.get("message"))[:300]
                else:
                    out["message"] = str(output)[:300]
                break
    finally:
        ws.close()
    picked = next((e["t"] for e in events if e["status"] == "running" and
                   str(e["output"] or "").startswith("picked up")), None)
    first = {s: next((e["t"] for e in events if e["status"] == s), None)
             for s in ("compiling", "timing")}
    first["perf"] = next((e["t"] for e in events
                          if str(e["output"] or "").startswith("running the performance")), None)
    end = events[-1]["t"] if events and events[-1]["status"] in TERMINAL else None
    if picked is not None and end is not None:
        out["pickup_to_verdict_s"] = round(end - picked, 3)
        out["queued_s"] = round(picked, 3)
        for s, t in first.items():
            out[f"pickup_to_{s}_s"] = None if t is None else round(t - picked, 3)
        # the performance phase as the client sees it: from the child's "timing" (the timed
        # runs start) to the verdict (timed runs, reveal, burst, fresh check, the verdict)
        out["timing_to_verdict_s"] = (None if first["timing"] is None
                                      else round(end - first["timing"], 3))
    out["ok"] = out["verdict"] == expected
    return out


def percentile(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def summary(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        entry: Dict[str, Any] = {"n": len(mine), "wrong_verdicts": sum(not r["ok"] for r in mine)}
        for key in ("pickup_to_verdict_s", "pickup_to_compiling_s", "pickup_to_perf_s",
                    "pickup_to_timing_s", "timing_to_verdict_s", "queued_s"):
            values = [r[key] for r in mine if r.get(key) is not None]
            entry[key] = {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
        out[kind] = entry
    return out


def gpu_name(gpu: int) -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        raise SystemExit("no nvidia-smi: this benchmark needs a GPU")
    done = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader", "-i", str(gpu)],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="submissions of each kind, one at a time")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which kinds (comma-separated)")
    parser.add_argument("--idle", type=float, default=4.0,
                        help="seconds between two latency submissions (the worker parks its next "
                             "job process meanwhile)")
    parser.add_argument("--queue", type=int, default=40, help="submissions sent at once (0: skip)")
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--cpu", action="store_true",
                        help="a smoke run without a GPU: one CPU worker (use --kinds pytorch,wrong)")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--no-prewarm", action="store_true", help="the baseline: cold job processes")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="the workers' --time-budget (the timed runs' ceiling; default 3 s)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    data = Path(tempfile.mkdtemp(prefix="judge-latency-"))
    out = args.out or data / "out"
    out.mkdir(parents=True, exist_ok=True)
    if args.cpu:
        name, accelerator, accelerators, workers = "cpu", "cpu", "{cpu: []}", "cpu:1"
    else:
        name = gpu_name(args.gpu)
        accelerator = "H200" if "H200" in name else "H100"
        accelerators, workers = f"{{{accelerator}: [{json.dumps(name)}]}}", f"gpus:{args.gpu}"
    (data / "judge.yaml").write_text(
        f"accelerators: {accelerators}\nworkers: {workers}\n"
        f"limits:\n  time_limit_s: {args.time_limit}\n  max_in_flight: 1000\n"
        f"  rate_limit: 100000\n  queue_capacity: 1000\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if args.no_prewarm:
        env["JUDGE_WORKER_NO_PREWARM"] = "1"
    if args.time_budget is not None:
        env["JUDGE_WORKER_TIME_BUDGET"] = str(args.time_budget)
    log_file = open(data / "serve.log", "w")
    server = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve",
                               "--port", str(port), "--config", str(data / "judge.yaml"),
                               "--data-dir", str(data / "store")],
                              cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                              start_new_session=True, env=env)
    report: Dict[str, Any] = {"gpu": name, "prewarm": not args.no_prewarm, "repeat": args.repeat,
                              "time_budget_s": args.time_budget}
    deadline = args.time_limit + 120
    try:
        wait_healthy(base, server, timeout_s=300)
        print(f"judge up on {name}; warming up (one of each kind, not counted)", flush=True)
        for kind in kinds:
            r = send(base, kind, accelerator, deadline)
            print(f"  warm-up {kind}: {r['verdict']} {r.get('pickup_to_verdict_s')} s", flush=True)
            time.sleep(args.idle)
        rows: List[Dict[str, Any]] = []
        for i in range(args.repeat):
            for kind in kinds:
                r = send(base, kind, accelerator, deadline)
                rows.append(r)
                print(f"  {kind:10s} #{i + 1}: {str(r['verdict']):14s} pickup->verdict "
                      f"{r.get('pickup_to_verdict_s')} s (compiling +{r.get('pickup_to_compiling_s')}"
                      f", performance test +{r.get('pickup_to_perf_s')}, timing "
                      f"+{r.get('pickup_to_timing_s')}, timing->verdict "
                      f"{r.get('timing_to_verdict_s')})", flush=True)
                time.sleep(args.idle)
        report["latency"] = summary(rows)
        report["latency_rows"] = rows
        if args.queue:
            mix = [k for k in ("cuda", "triton", "pytorch", "wrong") if k in kinds] or kinds
            order = [mix[i % len(mix)] for i in range(args.queue)]
            random.Random(28).shuffle(order)
            results: List[Dict[str, Any]] = [{} for _ in order]
            sent = time.monotonic()

            def one(i: int, kind: str) -> None:
                results[i] = send(base, kind, accelerator, deadline * args.queue)
                results[i]["sent_offset_s"] = 0.0

            threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(order)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            picks = [r["queued_s"] for r in results if r.get("queued_s") is not None]
            ends = [r["queued_s"] + r["pickup_to_verdict_s"] for r in results
                    if r.get("pickup_to_verdict_s") is not None]
            span = (max(ends) - min(picks)) if picks and ends else None
            report["queue"] = {
                "n": len(order), "graded": len(ends),
                "wrong_verdicts": sum(not r.get("ok") for r in results),
                "span_s": round(span, 2) if span else None,
                "wall_s": round(time.monotonic() - sent, 2),
                "gradings_per_gpu_minute": round(len(ends) / span * 60, 2) if span else None,
                "by_kind": summary(results)}
            report["queue_rows"] = results
    finally:
        stop_server(server)
        log_file.close()
        (out / "judge_serve.log").write_text((data / "serve.log").read_text()[-200000:])
        (out / "judge_latency.json").write_text(json.dumps(report, indent=1))
    print(f"\n{'kind':10s} {'n':>3s} {'p50 s':>7s} {'p95 s':>7s} {'compiling p50':>14s} "
          f"{'timing p50':>11s} {'perf phase p50':>15s} {'target':>7s}")
    ok = True
    for kind, entry in report.get("latency", {}).items():
        v = entry["pickup_to_verdict_s"]
        target = TARGETS.get(kind)
        hit = target is None or (v["p50"] is not None and v["p50"] <= target)
        ok &= hit and not entry["wrong_verdicts"]
        print(f"{kind:10s} {entry['n']:3d} {str(v['p50']):>7s} {str(v['p95']):>7s} "
              f"{str(entry['pickup_to_compiling_s']['p50']):>14s} "
              f"{str(entry['pickup_to_timing_s']['p50']):>11s} "
              f"{str(entry['timing_to_verdict_s']['p50']):>15s} "
              f"{('<= %g %s' % (target, 'ok' if hit else 'MISSED')) if target else '':>7s}"
              f"{'  WRONG VERDICTS: %d' % entry['wrong_verdicts'] if entry['wrong_verdicts'] else ''}")
    queue = report.get("queue")
    if queue:
        rate = queue["gradings_per_gpu_minute"]
        hit = rate is not None and rate >= TARGET_RATE and not queue["wrong_verdicts"]
        ok &= hit
        print(f"queue of {queue['n']}: {queue['graded']} graded in {queue['span_s']} s "
              f"(first pickup to last verdict): {rate} gradings per GPU-minute "
              f"(target >= {TARGET_RATE:g}: {'ok' if hit else 'MISSED'}); wrong verdicts: "
              f"{queue['wrong_verdicts']}")
    print(f"output: {out / 'judge_latency.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
