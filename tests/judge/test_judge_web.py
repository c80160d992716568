"""The leaderboard's HTTP and WebSocket surface and the page's files, in process (FastAPI's
TestClient over a real SQLite store; the test plays the worker through the service, so every
figure is exact): GET /api/v1/leaderboards/{challenge}, the admin's review, the leaderboard
events on a followed WebSocket stream, the page's routes, and the vendored files."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from runner.judge.server.app import create_app
from runner.judge.server.auth import TokenRegistry
from runner.judge.accelerators import Accelerators
from runner.judge.challenge_set import ChallengeSet
from runner.judge.config import JudgeConfig
from runner.judge.server.service import JudgeService
from runner.judge.server.storage.sqlite import SQLiteStore
from runner.judge.server.routes.page import CSP, STATIC

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOKENS = {"alice": ("alice-token-0123456789abcdef", ["user"]),
          "bob": ("bob-token-0123456789abcdef-bob", ["user"]),
          "root": ("root-token-0123456789abcdef-root", ["admin"])}


@pytest.fixture
def judge(tmp_path):
    store = SQLiteStore(tmp_path / "judge.sqlite3")
    registry = TokenRegistry(open_access=False)
    for name, (tok, roles) in TOKENS.items():
        registry.add(name, roles, tok)
    config = JudgeConfig()
    config.limits.max_in_flight = 100
    service = JudgeService(config, store, ChallengeSet([REPO / "challenges", HERE / "challenges"]),
                           Accelerators({"H200": ["NVIDIA H200"], "cpu": []}), registry)
    with TestClient(create_app(service, manage_service=False)) as client:
        yield service, client
    store.close()


def auth(who):
    return {"Authorization": f"Bearer {TOKENS[who][0]}"}


def message(who, language="cuda", action="submit", challenge="96", **extra):
    return {"action": action, "token": TOKENS[who][0],
            "submission": {"files": [{"name": "solution.cu", "content": f"// {who} {time.time()}"}],
                           "language": language, "accelerator": "H200", "challenge": challenge},
            **extra}


def perf(ms):
    return {"verdict": "accepted", "message": "",
            "performance": {"timed": True, "solution": {"median_ms": ms}, "gbps": 69.2e-3 / ms,
                            "bandwidth_fraction": 0.5, "floor_fraction": 0.02 / ms}}


def play_worker(service, worker, result, wait=20.0):
    """Claim the next H200 job and store ``result`` for it; returns its id."""
    job = service.claim(worker, ["H200"], wait_s=wait)
    assert job is not None, "nothing to claim"
    sid = job.lease.submission_id
    assert service.complete(sid, job.lease.lease_id, result).stored
    return sid


def ranked(service, client, who, language, submitted, verified):
    r = client.post("/api/v1/submissions", json=message(who, language))
    assert r.status_code == 202, r.text
    sid = r.json()["submissionId"]
    assert play_worker(service, "w1", perf(submitted)) == sid
    assert play_worker(service, "w1", perf(verified)).startswith("verify-")
    return sid


def test_the_leaderboard_api_ranks_by_verified_median_per_accelerator_and_language(judge):
    service, client = judge
    a = ranked(service, client, "alice", "cuda", 0.0260, 0.0256)
    b = ranked(service, client, "bob", "triton", 0.0340, 0.0339)
    a_torch = ranked(service, client, "alice", "pytorch", 0.3600, 0.3537)
    board = client.get("/api/v1/leaderboards/96?accelerator=nvidia h200").json()   # an alias
    assert board["challenge"] == "96_int8_kv_cache_attention" and board["accelerator"] == "H200"
    assert board["band"] == 0.10
    assert [(e["rank"], e["owner"], e["language"], e["submissionId"]) for e in board["entries"]] \
        == [(1, "alice", "cuda", a), (2, "bob", "triton", b)]
    first = board["entries"][0]
    assert first["medianMs"] == pytest.approx(0.0256)            # the verification's median
    assert first["submittedMedianMs"] == pytest.approx(0.0260)
    assert first["gbps"] == pytest.approx(69.2e-3 / 0.0256)
    assert first["floorFraction"] == pytest.approx(0.02 / 0.0256)
    assert first["verificationId"].startswith("verify-") and first["when"] > 0
    by_slug = client.get("/api/v1/leaderboards/int8_kv_cache_attention",
                         params={"accelerator": "H200", "language": "torch"}).json()
    assert by_slug["language"] == "pytorch"
    assert [e["submissionId"] for e in by_slug["entries"]] == [a_torch]
    assert client.get("/api/v1/leaderboards/96?accelerator=cpu").json()["entries"] == []
    # history: every decision, newest first
    assert [e["submissionId"] for e in board["history"]] == [a_torch, b, a]
    for bad, code in (("/api/v1/leaderboards/nope", 404), ("/api/v1/leaderboards/96?language=cobol", 400),
                      ("/api/v1/leaderboards/96?accelerator=TPU", 404)):
        r = client.get(bad)
        assert r.status_code == code and r.json()["output"], (bad, r.text)


def test_only_an_admin_removes_or_approves_entries(judge):
    service, client = judge
    sid = ranked(service, client, "alice", "cuda", 0.0260, 0.0256)
    held = ranked(service, client, "bob", "cuda", 0.0100, 0.0200)       # 100% apart: held
    board = client.get("/api/v1/leaderboards/96").json()
    assert [e["submissionId"] for e in board["held"]] == [held]
    assert board["held"][0]["submittedMedianMs"] == pytest.approx(0.0100)
    assert board["held"][0]["verifiedMedianMs"] == pytest.approx(0.0200)
    url = f"/api/v1/leaderboards/96/entries/{sid}"
    assert client.delete(url).status_code == 401
    r = client.delete(url, headers=auth("alice"))
    assert r.status_code == 403 and "admin" in r.json()["output"]
    assert client.delete("/api/v1/leaderboards/97/entries/" + sid, headers=auth("root")).status_code == 404
    r = client.delete(url, params={"reason": "shared solution"}, headers=auth("root"))
    assert r.status_code == 200 and r.json()["entry"]["state"] == "removed"
    assert client.get("/api/v1/leaderboards/96").json()["entries"] == []
    r = client.post(f"/api/v1/leaderboards/96/entries/{held}/approve", headers=auth("root"))
    assert r.status_code == 200
    [entry] = client.get("/api/v1/leaderboards/96").json()["entries"]
    assert entry["submissionId"] == held and entry["medianMs"] == pytest.approx(0.0200)
    assert client.post(f"/api/v1/leaderboards/96/entries/{held}/approve",
                       headers=auth("root")).status_code == 409


def _ws_log(client, msg, worker_steps, service):
    """Send ``msg`` over the WebSocket while a thread plays the worker; every message until the
    server closes the socket."""
    errors = []

    def work():
        try:
            for result in worker_steps:
                play_worker(service, "w1", result)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    log = []
    with client.websocket_connect("/api/v1/ws/submit") as ws:
        ws.send_text(json.dumps(msg))
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while True:
            try:
                log.append(json.loads(ws.receive_text()))
            except WebSocketDisconnect:         # the server closed the socket
                break
    thread.join(30)
    assert not errors, errors
    return log


def test_a_followed_stream_carries_the_leaderboard_events_after_the_terminal_one(judge):
    service, client = judge
    log = _ws_log(client, message("alice", followLeaderboard=True),
                  [perf(0.0300), perf(0.0290)], service)
    statuses = [m["status"] for m in log]
    assert statuses[0] == "queued" and statuses.count("success") == 1
    assert statuses[-2:] == ["leaderboard", "leaderboard"]
    assert statuses.index("success") < statuses.index("leaderboard")
    assert [m["seq"] for m in log] == list(range(len(log)))
    verifying, final = log[-2]["output"], log[-1]["output"]
    assert verifying["state"] == "verifying" and verifying["final"] is False
    assert final["final"] is True and final["state"] == "ranked" and final["rank"] == 1
    assert final["entry"]["medianMs"] == pytest.approx(0.0290)
    assert final["challenge"] == "96_int8_kv_cache_attention" and final["accelerator"] == "H200"
    assert "ranked 1 of 1" in final["message"]
    # the same events over HTTP, after the terminal one
    sid = log[0]["submissionId"]
    events = client.get(f"/api/v1/submissions/{sid}/events", headers=auth("alice")).json()["events"]
    assert [e["status"] for e in events][-3:] == ["success", "leaderboard", "leaderboard"]


def test_without_follow_the_stream_ends_at_the_terminal_event_as_leetgpu_expects(judge):
    service, client = judge
    log = _ws_log(client, message("alice"), [perf(0.0300)], service)
    assert log[-1]["status"] == "success"
    assert "leaderboard" not in [m["status"] for m in log]


def test_a_followed_run_or_wrong_answer_ends_at_its_terminal_event(judge):
    service, client = judge
    log = _ws_log(client, message("alice", action="run", followLeaderboard=True),
                  [{"verdict": "accepted"}], service)
    assert log[-1]["status"] == "success"
    log = _ws_log(client, message("alice", followLeaderboard=True),
                  [{"verdict": "wrong_answer", "message": "test 2"}], service)
    assert log[-1]["status"] == "error"


def test_a_followed_stream_resumed_after_the_terminal_event_gets_the_rest(judge):
    service, client = judge
    r = client.post("/api/v1/submissions", json=message("alice", submissionId="resume-lb-0001"))
    sid = r.json()["submissionId"]
    play_worker(service, "w1", perf(0.0300))
    terminal = [e for e in client.get(f"/api/v1/submissions/{sid}/events",
                                      headers=auth("alice")).json()["events"]
                if e["status"] == "success"][0]
    log = _ws_log(client, message("alice", submissionId=sid, after=terminal["seq"],
                                  followLeaderboard=True), [perf(0.0310)], service)
    assert [m["status"] for m in log] == ["leaderboard", "leaderboard"]
    assert log[-1]["output"]["state"] == "ranked"


def test_the_page_and_its_api(judge):
    service, client = judge
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["content-security-policy"] == CSP and "default-src 'self'" in CSP
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/vendor/katex/katex.min.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    me = client.get("/api/v1/me", headers=auth("root")).json()
    assert me == {"name": "root", "roles": ["admin"], "admin": True, "auth": "on"}
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    c = client.get("/api/v1/challenges/96").json()
    assert c["title"] == "INT8 KV-Cache Attention" and c["id"] == "96_int8_kv_cache_attention"
    assert "<h3>Task</h3>" in c["spec"] and "pytorch" in c["languages"]
    assert "def solve" in c["starters"]["pytorch"] and c["fileNames"]["cuda"] == "solution.cu"
    v = client.get("/api/v1/challenges/1").json()
    assert v["title"] == "Vector Addition" and "\\(" in v["spec"]
    assert client.get("/api/v1/challenges/9999").status_code == 404


def test_the_page_loads_nothing_from_elsewhere_and_its_vendored_files_match_their_manifest():
    manifest = json.loads((STATIC / "vendor" / "VENDORED.json").read_text())
    assert set(manifest) == {"katex"}
    katex = manifest["katex"]
    assert katex["licence"] == "MIT" and "katex/LICENSE" in katex["files"]
    assert "Permission is hereby granted" in (STATIC / "vendor" / "katex" / "LICENSE").read_text()
    for rel, digest in katex["files"].items():
        assert hashlib.sha256((STATIC / "vendor" / rel).read_bytes()).hexdigest() == digest, rel
    fonts = re.findall(r"url\((fonts/[^)]+\.woff2)\)",
                       (STATIC / "vendor" / "katex" / "katex.min.css").read_text())
    assert fonts and all((STATIC / "vendor" / "katex" / f).is_file() for f in fonts)
    page = (STATIC / "index.html").read_text()
    for src in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert src.startswith("/static/") or src == "/docs", src
        if src.startswith("/static/"):
            assert (STATIC / src[len("/static/"):]).is_file(), src
    own = ((STATIC / "app.js").read_text() + (STATIC / "profile.js").read_text()
           + (STATIC / "style.css").read_text() + page)
    urls = set(re.findall(r"https?://[^\s\"'`)]+", own))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls          # an XML namespace, not a fetch
