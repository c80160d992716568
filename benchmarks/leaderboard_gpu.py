"""The leaderboard on a GPU machine, end to end, through ``run_challenge.py serve`` and its GPU
worker(s): two users submit challenge 96's references (alice CUDA, bob Triton) and bob a slower
PyTorch solution; each is verified by a second run with a new seed before it is ranked; a
third user sends the timing cheats of ``tests/corpus`` (made self-contained), which must never
reach the board. Prints the boards, checks the order by verified medians, writes the JSON and
screenshots of the page (Debian's chromium through Playwright, when both are there).

    python benchmarks/leaderboard_gpu.py [--out DIR] [--data-dir DIR] [--keep-serving]
    python benchmarks/leaderboard_gpu.py --show --data-dir DIR --out DIR --accelerator NAME

A GPU machine without Debian's chromium can keep the store (``--data-dir``) and have the page
photographed where chromium is (``--show``: serve that store, take the screenshots, stop).

Every submission goes through the page's own protocol (the WebSocket with
``"followLeaderboard": true``), so its stream ends with the final ``leaderboard`` event. Exit
status 0 when: every reference is accepted and ranked, the overall board is ordered CUDA <
Triton by verified median (and the PyTorch board holds bob's PyTorch entry, slower than
both), every ranked entry's two medians agree within the band, and no cheat is ranked.
With several GPUs, ``serve`` starts a worker per GPU and the verification runs on another one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List

import websocket   # websocket-client

REPO = Path(__file__).resolve().parent.parent
REF = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention" / "reference"
CORPUS = REPO / "tests" / "corpus"
TOKENS = {"alice": "alice-token-leaderboard-0123456789", "bob": "bob-token-leaderboard-0123456789",
          "mallory": "mallory-token-leaderboard-012345", "root": "root-token-leaderboard-0123456789"}
SUBMISSIONS = [("alice", "cuda", REF / "solution.cu"),
               ("bob", "triton", REF / "solution.triton.py"),
               ("bob", "pytorch", REF / "solution.pytorch.py")]
# corpus entries that lie about their time; any others named with --cheat are added
TIMING_CHEATS = ["timer_patch.pytorch.py", "forged_report.pytorch.py",
                 "forged_timing_patch.pytorch.py", "forged_timing_fd_swap.pytorch.py"]
TERMINAL = {"success", "error", "timeout", "oom", "interrupted"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_contained(path: Path) -> str:
    """A corpus entry with each ``from _helper import ...`` replaced by that helper's text (its
    own helpers first): a judge takes one file."""
    return _inline(path.read_text(), set())


def _inline(text: str, done: set) -> str:
    text = re.sub(r"^sys\.path\.insert\(0, __file__.*\n", "", text, flags=re.M)

    def helper(match: "re.Match") -> str:
        name = match.group(1)
        if name in done:
            return ""
        done.add(name)
        return _inline((CORPUS / f"{name}.py").read_text(), done)

    return re.sub(r"^from (_[a-z]+) import .*$", helper, text, flags=re.M)


def get(url: str, token: str = "") -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def submit(base: str, who: str, language: str, content: str, name: str, log: List[dict]) -> None:
    """One submission over the WebSocket, followed to its final leaderboard event."""
    ws = websocket.create_connection(base.replace("http", "ws") + "/api/v1/ws/submit", timeout=1800)
    suffix = {"cuda": ".cu", "triton": ".triton.py", "pytorch": ".pytorch.py"}[language]
    ws.send(json.dumps({"action": "submit", "token": TOKENS[who], "followLeaderboard": True,
                        "submissionId": f"lb-{who}-{language}-{uuid.uuid4().hex[:8]}",
                        "submission": {"files": [{"name": "solution" + suffix, "content": content}],
                                       "language": language, "challenge": "96"}}))
    start = time.monotonic()
    try:
        while True:
            try:
                raw = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                break
            if not raw:                 # the server's close frame
                break
            data = json.loads(raw)
            data["t"] = round(time.monotonic() - start, 2)
            log.append(data)
            out = data.get("output")
            line = out.get("message") or out.get("verdict") if isinstance(out, dict) else out
            print(f"  [{name} +{data['t']:.1f}s] {data['status']}: {str(line)[:160]}", flush=True)
    finally:
        ws.close()


def board_table(board: Dict[str, Any]) -> str:
    lines = [f"{board['challenge']} on {board['accelerator']}"
             f"{' (' + board['language'] + ')' if board['language'] else ''}:",
             f"  {'rank':>4}  {'user':<8} {'language':<8} {'verified':>11} {'submitted':>11} "
             f"{'apart':>6} {'GB/s':>7} {'% floor':>7}"]
    for e in board["entries"]:
        floor = f"{e['floorFraction']:.0%}" if e.get("floorFraction") is not None else "-"
        gbps = f"{e['gbps']:.0f}" if e.get("gbps") else "-"
        lines.append(f"  {e['rank']:>4}  {e['owner']:<8} {e['language']:<8} "
                     f"{e['verifiedMedianMs'] * 1e3:>8.1f} us {e['submittedMedianMs'] * 1e3:>8.1f} us "
                     f"{(e['disagreement'] or 0):>6.1%} {gbps:>7} {floor:>7}")
    for title, key in (("held for review", "held"), ("being verified", "verifying"),
                       ("not timed", "notTimed")):
        for e in board[key]:
            lines.append(f"  {title}: {e['owner']} {e['language']} {e['reason']}")
    return "\n".join(lines)


def screenshots(base: str, out: Path, accelerator: str = "") -> List[str]:
    if not Path(CHROMIUM).exists():
        print(f"no {CHROMIUM}: no screenshot (apt-get install chromium chromium-driver)")
        return []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("no playwright: no screenshot (pip install -e '.[browser]')")
        return []
    taken = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(base + "/")
        page.fill("#token", TOKENS["alice"])
        page.press("#token", "Enter")
        page.wait_for_selector("#whoami.ok")
        acc = f"accelerator={urllib.parse.quote(accelerator)}&" if accelerator else ""
        for name, route in (("leaderboard_96.png", f"#/leaderboard/96?{acc}"),
                            ("leaderboard_96_pytorch.png", f"#/leaderboard/96?{acc}language=pytorch")):
            page.goto(f"{base}/{route}")
            page.wait_for_selector("#lb-ranks, #lb-empty")
            page.screenshot(path=str(out / name), full_page=True)
            taken.append(str(out / name))
        browser.close()
    return taken


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="where the JSON and screenshots go")
    ap.add_argument("--cheat", action="append", default=[], metavar="FILE",
                    help="another timing cheat (a tests/corpus file name) to send as mallory")
    ap.add_argument("--keep-serving", action="store_true",
                    help="leave serve running at the end (Ctrl+C stops it), to look at the page")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="serve's data folder (its store); kept, to show the page elsewhere")
    ap.add_argument("--show", action="store_true",
                    help="only serve --data-dir as a finished run left it and take screenshots")
    ap.add_argument("--accelerator", default="",
                    help="with --show: the accelerator whose boards to photograph (the run's GPU)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="leaderboard-gpu-"))
    data_dir = args.data_dir or tmp / "data"
    out = args.out or tmp / "out"
    out.mkdir(parents=True, exist_ok=True)
    config = tmp / "judge.yaml"
    config.write_text("tokens:\n" + "".join(
        f"  - {{name: {n}, roles: [{'admin' if n == 'root' else 'user'}], token: {t}}}\n"
        for n, t in TOKENS.items()) + "workers: auto\nlimits: {max_in_flight: 8}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "JUDGE_LOCK_DIR": str(tmp),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    serve_log = open(out / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve", "--port",
                             str(port), "--config", str(config), "--data-dir", str(data_dir)],
                            env=env, stdout=serve_log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    failures: List[str] = []
    try:
        for _ in range(300):
            try:
                get(base + "/healthz")
                break
            except OSError:
                time.sleep(0.5)
        if args.show:
            print("\n".join(["written:"] + screenshots(base, out, args.accelerator)))
            return 0
        accelerators = [a["name"] for a in get(base + "/api/v1/accelerators")["accelerators"]]
        print(f"judge at {base}: accelerators {accelerators}; page {base}/")
        if accelerators == ["cpu"]:
            print("note: no GPU here: nothing is timed, so the checks of the order will fail")
        logs: Dict[str, List[dict]] = {}
        jobs = [(who, lang, path.read_text(), f"{who}/{lang}") for who, lang, path in SUBMISSIONS]
        for name in TIMING_CHEATS + args.cheat:
            path = CORPUS / name
            if path.is_file():
                jobs.append(("mallory", "pytorch", self_contained(path), f"mallory/{name}"))
        threads = []
        for who, lang, content, name in jobs:
            logs[name] = []
            t = threading.Thread(target=submit, args=(base, who, lang, content, name, logs[name]))
            t.start()
            threads.append(t)
            time.sleep(0.5)             # queued in this order
        for t in threads:
            t.join()
        board = get(base + "/api/v1/leaderboards/96")
        torch_board = get(base + "/api/v1/leaderboards/96?language=pytorch")
        print()
        print(board_table(board))
        print(board_table(torch_board))
        ranked = [(e["owner"], e["language"]) for e in board["entries"]]
        if ranked[:2] != [("alice", "cuda"), ("bob", "triton")]:
            failures.append(f"the overall board is {ranked}, not alice/cuda then bob/triton")
        if [(e["owner"], e["language"]) for e in torch_board["entries"]] != [("bob", "pytorch")]:
            failures.append("the PyTorch board does not hold exactly bob's PyTorch entry")
        medians = [e["verifiedMedianMs"] for e in board["entries"][:2] + torch_board["entries"][:1]]
        if len(medians) == 3 and not medians[0] < medians[1] < medians[2]:
            failures.append(f"verified medians not CUDA < Triton < PyTorch: {medians}")
        for e in board["entries"] + torch_board["entries"]:
            if e["disagreement"] is None or e["disagreement"] > board["band"]:
                failures.append(f"{e['owner']}/{e['language']} ranked with medians "
                                f"{e['submittedMedianMs']} and {e['verifiedMedianMs']}")
            if e["verifyWorker"] == e["worker"]:
                print(f"note: {e['owner']}/{e['language']} was verified on the worker that graded "
                      f"it ({e['worker']}): no other worker of that accelerator was present")
        cheats = {e["submissionId"]: e for source in (board, torch_board)
                  for key in ("entries", "notTimed") for e in source[key] if e["owner"] == "mallory"}
        for e in cheats.values():
            failures.append(f"a timing cheat reached the board: {e['submissionId']} "
                            f"({e['reason']})")
        for name, log in logs.items():
            if name.startswith("mallory/"):
                verdict = next((m["output"].get("verdict") for m in log
                                if m["status"] in TERMINAL and isinstance(m["output"], dict)), None)
                final = next((m["output"] for m in log if m["status"] == "leaderboard"
                              and m["output"].get("final")), None)
                print(f"cheat {name}: verdict {verdict}; leaderboard "
                      f"{final['state'] if final else 'never considered it'}")
        shots = screenshots(base, out, accelerators[0])
        (out / "leaderboard_gpu.json").write_text(json.dumps(
            {"board": board, "pytorch_board": torch_board, "streams": logs,
             "screenshots": shots, "failures": failures}, indent=1, default=str))
        print(f"\nwritten: {out / 'leaderboard_gpu.json'}" + "".join(f"\n  {s}" for s in shots))
        if args.keep_serving:
            print(f"serving at {base}/ (Ctrl+C stops it)")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        serve_log.close()
    for f in failures:
        print(f"FAIL: {f}")
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
