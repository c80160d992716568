"""The judge on a GPU machine, end to end: start ``run_challenge.py serve`` (SQLite, one worker
per local GPU), send a correct, a wrong, a crashing and a hanging CUDA solution of challenge
96 through a WebSocket client written the way LeetGPU's public client is, and print each one's
statuses and final verdict.

    python benchmarks/judge_gpu_demo.py [--only NAME] [--time-limit 30] [--out DIR]

For each submission it prints the timeline of statuses (seconds since it was sent) and, once
the submission ends or the demo's own deadline for it passes (``--deadline``, default: the
time limit + the watchdog margin + 60 s), writes into ``--out`` (default: a folder in the
judge's temporary data directory, printed at the end) what a stuck job needs to be diagnosed:
``<name>/timeline.json`` (every message, timestamped), ``<name>/submission.json`` and
``<name>/events.json`` (the service's view: ``GET /api/v1/submissions/{id}`` and its events),
``<name>/processes.txt`` (the judge's process tree with each process's state, kernel wait
channel and command line: a job stuck in uninterruptible sleep shows ``D``) and
``<name>/nvidia-smi.txt``. ``judge_gpu_demo.json`` sums up, ``judge_serve.log`` is the end of
the service's log (API and workers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List

import websocket   # websocket-client, as LeetGPU's scripts/run_challenge.py uses

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS = {
    "correct": REPO / "tests" / "harness_solutions" / "cuda_correct.cu",
    "wrong": REPO / "challenges/medium/96_int8_kv_cache_attention/solutions/wrong/no_k_scale.cu",
    "crashing": REPO / "tests" / "corpus" / "illegal_address.cu",
    "hanging": REPO / "tests" / "corpus" / "gpu_hang.cu",
    "after_hang": REPO / "tests" / "harness_solutions" / "cuda_correct.cu",   # the same worker, next job
}
EXPECTED = {"correct": "accepted", "wrong": "wrong_answer", "crashing": "runtime_error",
            "hanging": "time_limit_exceeded", "after_hang": "accepted"}
TERMINAL = {"success", "error", "timeout", "oom", "interrupted"}
WATCHDOG_MARGIN_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the judge exited with code {server.returncode} (see its log)")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the judge did not become healthy")


def get_json(url: str, timeout: float = 10.0) -> Any:
    """The service's answer to a GET (or what went wrong asking)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return {"httpStatus": exc.code, "body": exc.read().decode("utf-8", "replace")[:5000]}
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def submit(base: str, path: Path, action: str, deadline_s: float, name: str) -> Dict[str, Any]:
    """Send one submission (with our own submissionId, so that the service can be asked about
    it even if no reply comes) and read its statuses until a terminal one or the deadline."""
    sid = f"demo-{name}-{uuid.uuid4().hex[:12]}"
    started, wall = time.monotonic(), time.time()
    timeline: List[Dict[str, Any]] = []
    outcome: Dict[str, Any] = {"submissionId": sid, "sentAt": wall, "timeline": timeline,
                               "terminal": None, "verdict": None, "message": None}

    def note(status: str, output: Any, **extra: Any) -> None:
        t = round(time.monotonic() - started, 2)
        timeline.append({"t": t, "wall": round(time.time(), 3), "status": status,
                         "output": output, **extra})
        text = output if isinstance(output, str) else (
            (output or {}).get("message") if isinstance(output, dict) else output)
        print(f"  {name:9s} +{t:7.2f}s  {status:12s} {str(text)[:120]}", flush=True)

    try:
        ws = websocket.create_connection(base.replace("http", "ws", 1) + "/api/v1/ws/submit",
                                         timeout=10)
    except (OSError, websocket.WebSocketException) as exc:
        note("demo-error", f"could not connect: {exc}")
        return outcome
    try:
        ws.send(json.dumps({"action": action, "token": "", "submissionId": sid, "submission": {
            "files": [{"name": "solution.cu", "content": path.read_text()}],
            "language": "cuda", "accelerator": "H100", "mode": "accelerated", "public": False,
            "challengeCode": (REPO / "challenges/medium/96_int8_kv_cache_attention/challenge.py")
            .read_text()}}))
        while True:
            left = deadline_s - (time.monotonic() - started)
            if left <= 0:
                note("demo-deadline", f"no terminal status within {deadline_s:g} s")
                break
            ws.settimeout(min(left, 5.0))
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException) as exc:
                note("demo-error", f"the connection ended: {type(exc).__name__}: {exc}")
                break
            msg = json.loads(raw)
            note(str(msg.get("status")), msg.get("output"), seq=msg.get("seq"))
            if msg.get("status") in TERMINAL:
                output = msg.get("output")
                outcome.update(terminal=msg["status"],
                               verdict=output.get("verdict") if isinstance(output, dict) else None,
                               message=(output.get("message") if isinstance(output, dict)
                                        else output))
                break
    finally:
        try:
            ws.close()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


def read_guarded(path: str, timeout: float = 1.0) -> str:
    """A /proc file read in a daemon thread: reading the command line of a process that is
    exiting (its memory being torn down) can block, and the diagnosis must not."""
    box: List[str] = []

    def read() -> None:
        try:
            with open(path, "rb") as f:
                box.append(f.read(65536).replace(b"\0", b" ").decode("utf-8", "replace").strip())
        except OSError as exc:
            box.append(f"({exc.strerror})")

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else "(blocked)"


def process_listing(root: int) -> str:
    """The process tree under ``root``: pid, ppid, pgid, state, wait channel, command line,
    and the kernel stack of a process in uninterruptible sleep (D) where readable."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        try:
            with open(f"/proc/{entry}/wchan") as f:
                wchan = f.read().strip() or "-"
        except OSError:
            wchan = "?"
        table[int(entry)] = [int(fields[1]), int(fields[2]), fields[0].decode(), wchan, None]
    lines = ["pid ppid pgid state wchan command"]

    def describe(pid: int) -> str:
        info = table[pid]
        if info[4] is None:
            info[4] = read_guarded(f"/proc/{pid}/cmdline")
        text = f"{pid} {info[0]} {info[1]} {info[2]} {info[3]} {info[4][:300]}"
        if info[2] == "D":
            stack = read_guarded(f"/proc/{pid}/stack")
            text += "\n    kernel stack: " + stack.replace("\n", "\n    ")
        return text

    def walk(pid: int, depth: int) -> None:
        lines.append("  " * depth + describe(pid))
        for child in sorted(p for p, v in table.items() if v[0] == pid):
            walk(child, depth + 1)

    if root in table:
        walk(root, 0)
    outside = [p for p in table if p != root and not _under(p, root, table)
               and "runner." in read_guarded(f"/proc/{p}/cmdline", 0.2)]
    if outside:
        lines.append("# judge processes outside the server's tree (orphans):")
        lines += [describe(p) for p in outside]
    return "\n".join(lines) + "\n"


def _under(pid: int, root: int, table) -> bool:
    seen = set()
    while pid in table and pid not in seen:
        if pid == root:
            return True
        seen.add(pid)
        pid = table[pid][0]
    return False


def dump_service_view(base: str, sid: str, folder: Path, server: subprocess.Popen) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.json").write_text(json.dumps(
        get_json(f"{base}/api/v1/submissions/{sid}"), indent=1))
    (folder / "events.json").write_text(json.dumps(
        get_json(f"{base}/api/v1/submissions/{sid}/events?after=-1"), indent=1))
    (folder / "processes.txt").write_text(process_listing(server.pid))
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi], capture_output=True, text=True, timeout=20)
            text = done.stdout + done.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            text = f"nvidia-smi did not answer: {exc}"
        (folder / "nvidia-smi.txt").write_text(text)


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM the service's process group; SIGKILL it if it has not ended within 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if server.poll() is not None:
            return
        try:
            os.killpg(server.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            print(f"the judge did not stop within {wait} s of {signal.Signals(sig).name}",
                  flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--action", default="submit")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", choices=sorted(SUBMISSIONS), action="append",
                        help="send only these submissions")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds to wait for each submission's terminal status (default: "
                             f"the time limit + the watchdog margin "
                             f"({WATCHDOG_MARGIN_S:g} s) + 60)")
    args = parser.parse_args(argv)
    deadline = args.deadline or args.time_limit + WATCHDOG_MARGIN_S + 60.0
    chosen = {k: v for k, v in SUBMISSIONS.items() if not args.only or k in args.only}
    data = Path(tempfile.mkdtemp(prefix="judge-demo-"))
    out = args.out or data / "demo-out"
    out.mkdir(parents=True, exist_ok=True)
    config = data / "judge.yaml"
    config.write_text(f"accelerators:\n  H100: [\"NVIDIA H100 80GB HBM3\"]\nworkers: auto\n"
                      f"limits:\n  time_limit_s: {args.time_limit}\n"
                      f"leases:\n  watchdog_margin_s: {WATCHDOG_MARGIN_S}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = open(data / "serve.log", "w")
    server = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve",
                               "--port", str(port), "--config", str(config),
                               "--data-dir", str(data / "store")],
                              cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                              start_new_session=True)
    results: Dict[str, Any] = {}
    try:
        wait_healthy(base, server)
        for name, path in chosen.items():
            print(f"{name}: sending {path.relative_to(REPO)} (deadline {deadline:g} s)", flush=True)
            outcome = submit(base, path, args.action, deadline, name)
            results[name] = outcome
            dump_service_view(base, outcome["submissionId"], out / name, server)
            (out / name / "timeline.json").write_text(json.dumps(outcome, indent=1))
            statuses = [e["status"] for e in outcome["timeline"]]
            print(f"{name:9s} {str(outcome['terminal']):8s} {outcome['verdict']}: "
                  f"{str(outcome['message'])[:140]}  ({outcome.get('seconds')} s; "
                  f"statuses {' > '.join(dict.fromkeys(statuses))})", flush=True)
            if outcome["terminal"] is None:
                print(f"  {name}: no terminal status; the service's view is in {out / name}",
                      flush=True)
    finally:
        stop_server(server)
        log_file.close()
        (out / "judge_gpu_demo.json").write_text(json.dumps(results, indent=1))
        (out / "judge_serve.log").write_text((data / "serve.log").read_text()[-50000:])
        print(f"output: {out}", flush=True)
    return 0 if all(results.get(k, {}).get("verdict") == EXPECTED[k] for k in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
