"""Protocol fuzzing, authentication and backpressure, in process (no worker): every bad input
gets a clear `error` message, is never stored (so never reaches a worker), and the next good
submission on the same server is accepted."""

from __future__ import annotations

import hmac
import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from judge_helpers import CHALLENGE_CODE, message, token, write_config
from runner.judge.server import auth
from runner.judge.server.app import create_app
from runner.judge.config import ConfigError, load_config, parse_config
from runner.judge.server.service import JudgeService

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def make_client(tmp_path):
    clients = []

    def make(**overrides):
        folder = tmp_path / f"j{len(clients)}"
        folder.mkdir()
        config = load_config(write_config(folder / "judge.yaml", **overrides))
        service = JudgeService.from_config(config, folder)
        client = TestClient(create_app(service))
        client.__enter__()
        clients.append(client)
        return client, service

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def ws_exchange(client, frame):
    """Send one frame (str or bytes); the server's first reply (an error, or `queued` for a
    stored submission; nothing more comes without a worker), in a list."""
    with client.websocket_connect("/api/v1/ws/submit") as ws:
        ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
        return [json.loads(ws.receive_text())]


def good() -> dict:
    return message()


def mutate(path, value):
    msg = good()
    target = msg
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(msg)


BAD_FRAMES = {
    "malformed JSON": '{"action": "run", "submission": ',
    "not an object": "[1, 2, 3]",
    "empty": "   ",
    "deeply nested": "[" * 100000 + "]" * 100000,
    "non-UTF-8 bytes": b"\xff\xfe{\x00",
    "binary file": mutate(["submission", "files"], [{"name": "s.py", "content": "a\x00b"}]),
    "unpaired surrogate": '{"action":"run","submission":{"files":[{"name":"s.py","content":"\\ud800"}],'
                          '"language":"pytorch","challenge":1}}',
    "missing action": mutate(["action"], KeyError),
    "unknown action": mutate(["action"], "rm -rf"),
    "action not a string": mutate(["action"], 7),
    "missing submission": mutate(["submission"], KeyError),
    "submission not an object": mutate(["submission"], "x"),
    "files missing": mutate(["submission", "files"], KeyError),
    "files not a list": mutate(["submission", "files"], {"name": "a"}),
    "two files": mutate(["submission", "files"], [{"name": "a.py", "content": ""}] * 2),
    "file not an object": mutate(["submission", "files"], ["solution.py"]),
    "content not a string": mutate(["submission", "files"], [{"name": "a.py", "content": 5}]),
    "path traversal": mutate(["submission", "files"], [{"name": "../../etc/passwd", "content": "x"}]),
    "absolute path": mutate(["submission", "files"], [{"name": "/tmp/x.py", "content": "x"}]),
    "odd unicode name": mutate(["submission", "files"], [{"name": "sol\u202eyp.py", "content": "x"}]),
    "dotdot name": mutate(["submission", "files"], [{"name": "a..py", "content": "x"}]),
    "unknown language": mutate(["submission", "language"], "cobol"),
    "unsupported language": mutate(["submission", "language"], "mojo"),
    "language not a string": mutate(["submission", "language"], ["cuda"]),
    "unknown accelerator": mutate(["submission", "accelerator"], "TPU v9"),
    "public not a boolean": mutate(["submission", "public"], "yes"),
    "no challenge": mutate(["submission", "challengeCode"], KeyError),
    "unknown challenge": mutate(["submission", "challengeCode"], "class Challenge: pass"),
    "challenge number unknown": mutate(["submission", "challenge"], 12345),
    "challenge a boolean": mutate(["submission", "challenge"], True),
    "bad submission id": mutate(["submissionId"], "../../x"),
    "huge file": mutate(["submission", "files"], [{"name": "a.py", "content": "x" * 300_000}]),
    "huge message": json.dumps({**good(), "padding": "x" * 1_200_000}),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_input_gets_a_clear_error_and_never_reaches_a_worker(make_client, name):
    client, service = make_client()
    replies = ws_exchange(client, BAD_FRAMES[name])
    assert len(replies) == 1, replies
    reply = replies[0]
    assert reply["status"] == "error" and isinstance(reply["output"], str) and reply["code"]
    assert len(reply["output"]) < 400                     # a sentence, not a dump
    assert service.store.list() == []                     # nothing stored, nothing queued
    assert ws_exchange(client, json.dumps(good()))[0]["status"] == "queued"   # still serving


def test_random_garbage_never_breaks_the_connection_handling(make_client):
    client, service = make_client()
    rng = random.Random(1234)
    base = json.dumps(good())
    for _ in range(60):
        chars = list(base)
        for _ in range(rng.randint(1, 8)):
            k = rng.randrange(len(chars))
            chars[k] = rng.choice(['"', "{", "}", "\\", "\x00", "é", "1", ",", ":", "]"])
        replies = ws_exchange(client, "".join(chars))
        assert replies and replies[-1]["status"] in ("error", "queued"), replies
    before = len(service.store.list())
    assert ws_exchange(client, json.dumps(good()))[0]["status"] == "queued"
    assert len(service.store.list()) == before + 1


def test_messages_with_wrong_field_specific_messages(make_client):
    client, _ = make_client()
    said = lambda frame: ws_exchange(client, frame)[0]["output"]  # noqa: E731
    assert "missing field `submission.files`" in said(BAD_FRAMES["files missing"])
    assert "is not allowed" in said(BAD_FRAMES["path traversal"])
    assert "unknown language 'cobol'" in said(BAD_FRAMES["unknown language"])
    assert "this judge has: cpu" in said(BAD_FRAMES["unknown accelerator"])
    assert "too large" in said(BAD_FRAMES["huge file"])
    assert "malformed JSON" in said(BAD_FRAMES["malformed JSON"])


def test_a_silent_client_is_told_and_disconnected(make_client):
    client, service = make_client(limits={"first_message_timeout_s": 0.3})
    with client.websocket_connect("/api/v1/ws/submit") as ws:
        reply = json.loads(ws.receive_text())
    assert reply["status"] == "error" and reply["code"] == "timeout"


def test_http_submit_validates_the_same_way(make_client):
    client, service = make_client()
    r = client.post("/api/v1/submissions", content=BAD_FRAMES["path traversal"])
    assert r.status_code == 400 and r.json()["status"] == "error"
    r = client.post("/api/v1/submissions", content=b"x" * 2_000_000)
    assert r.status_code == 413
    r = client.post("/api/v1/submissions", json=good())
    assert r.status_code == 202 and service.store.get(r.json()["submissionId"]).state == "queued"


# -- authentication -------------------------------------------------------------------------

def test_tokens_are_required_and_checked(make_client):
    client, service = make_client()
    assert ws_exchange(client, json.dumps(message(who=None)))[0]["code"] == "unauthorized"
    bad = {**good(), "token": "not-a-real-token-at-all-xxxxxxxx"}
    assert ws_exchange(client, json.dumps(bad))[0]["output"] == "invalid token"
    r = client.post("/api/v1/submissions", json=message(who=None),
                    headers={"Authorization": f"Bearer {token('bob')}"})
    assert r.status_code == 202 and service.store.get(r.json()["submissionId"]).owner == "bob"
    assert client.get("/api/v1/submissions").status_code == 401


def test_only_authors_may_send_their_own_challenge_code(make_client):
    client, service = make_client()
    own = CHALLENGE_CODE.replace("Vector Add", "Vector Add, my version")
    reply = ws_exchange(client, json.dumps(message(who="alice", submission={"challengeCode": own})))[0]
    assert reply["code"] == "unknown_challenge" and "author role" in reply["output"]
    reply = ws_exchange(client, json.dumps(message(who="carol", submission={"challengeCode": own})))[0]
    assert reply["status"] == "queued"
    record = service.store.get(reply["submissionId"])
    assert record.challenge == "custom" and record.challenge_code == own
    by_number = message(who="alice", submission={"challenge": 1})
    by_number["submission"].pop("challengeCode")
    reply = ws_exchange(client, json.dumps(by_number))[0]
    assert reply["status"] == "queued"                   # our extension: a number or slug
    assert service.store.get(reply["submissionId"]).challenge == "1_vector_add"


def test_worker_endpoints_need_the_worker_role(make_client):
    client, _ = make_client()
    for who, expected in (("alice", 403), ("root", 403), (None, 401)):
        headers = {"Authorization": f"Bearer {token(who)}"} if who else {}
        r = client.post("/api/v1/worker/claim", json={"accelerators": ["cpu"]}, headers=headers)
        assert r.status_code == expected, (who, r.text)
    r = client.post("/api/v1/worker/claim", json={"accelerators": ["cpu"]},
                    headers={"Authorization": f"Bearer {token('w1')}"})
    assert r.status_code == 204                          # nothing queued


def test_a_token_is_compared_with_every_entry_in_constant_time(monkeypatch):
    registry = auth.TokenRegistry(open_access=False)
    for k in range(5):
        registry.add(f"user{k}", ["user"], f"token-number-{k}-0123456789abcdef")
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert registry.lookup("token-number-0-0123456789abcdef").name == "user0"
    assert len(calls) == 5                              # no early exit on the first match
    calls.clear()
    assert registry.lookup("wrong") is None and len(calls) == 5


def test_config_keeps_secrets_out_and_rejects_mistakes(tmp_path, monkeypatch):
    monkeypatch.setenv("W_TOKEN", "w" * 40)
    cfg = parse_config({"tokens": [{"name": "w", "roles": ["worker"], "env": "W_TOKEN"},
                                   {"name": "u", "sha256": "ab" * 32}]})
    assert [t.name for t in cfg.tokens] == ["w", "u"] and cfg.tokens[1].token is None
    for bad, says in ((["x"], "tokens"), ({"tokens": [{"name": "a", "token": "short"}]}, "shorter"),
                      ({"tokens": [{"name": "a", "roles": ["god"], "token": "x" * 30}]}, "roles"),
                      ({"limits": {"max_in_flight": -1}}, "max_in_flight"),
                      ({"queue": {"backend": "dramatiq", "redis_url": "redis://x"}}, "accelerators"),
                      ({"workers": "lots"}, "workers"), ({"colour": "red"}, "unknown keys")):
        with pytest.raises(ConfigError, match=says):
            parse_config(bad if isinstance(bad, dict) else {"tokens": bad}, Path("judge.yaml"))


def test_serve_refuses_a_public_address_without_tokens(capsys):
    from runner.judge.serve import serve_main

    assert serve_main(["--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs a config with tokens" in err


def test_serve_without_the_judge_extras_says_what_to_install(capsys, monkeypatch):
    import sys

    from runner.judge.serve import serve_main

    monkeypatch.setitem(sys.modules, "uvicorn", None)      # as if it were not installed
    assert serve_main(["--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "uvicorn is missing" in err and "pip install -e '.[judge]'" in err


def test_new_token_prints_only_a_digest_for_the_config(capsys):
    assert auth.main(["new-token", "gpu-host-1", "worker"]) == 0
    out = capsys.readouterr().out
    issued = out.split("#   ")[1].split("\n")[0]
    assert auth.digest(issued).hex() in out and f"token: {issued}" not in out


# -- backpressure ---------------------------------------------------------------------------

def test_backpressure_queue_full_in_flight_cap_and_rate_limit(make_client):
    client, _ = make_client(limits={"queue_capacity": 2, "max_in_flight": 50, "rate_limit": 500})
    codes = [ws_exchange(client, json.dumps(message(who=w)))[0].get("code")
             for w in ("alice", "bob", "carol")]
    assert codes == [None, None, "queue_full"]
    client, _ = make_client(limits={"max_in_flight": 1})
    codes = [ws_exchange(client, json.dumps(message()))[0].get("code") for _ in range(2)]
    assert codes == [None, "too_many_in_flight"]
    client, _ = make_client(limits={"rate_limit": 2, "rate_window_s": 60})
    codes = [ws_exchange(client, json.dumps(message(who="bob")))[0].get("code") for _ in range(3)]
    assert codes == [None, None, "rate_limited"]
    r = client.get("/metrics")
    assert 'judge_refused_total{reason="rate_limited"} 1.0' in r.text
    assert 'judge_queue_depth{accelerator="cpu"} 2.0' in r.text


def test_health_and_listing(make_client):
    client, _ = make_client()
    r = client.get("/healthz")
    health = r.json()
    assert health["auth"] == "on" and health["queue"] == "embedded" and health["store"] == "ok"
    # no worker serves the cpu queue: not ok, and it says which queue and why
    assert r.status_code == 503 and health["status"] == "no_workers"
    assert health["workers"]["cpu"]["alive"] == 0
    assert health["problems"] == ["no worker is serving cpu: none has connected to this judge"]
    worker = {"Authorization": f"Bearer {token('w1')}"}
    r = client.post("/api/v1/worker/presence", headers=worker,
                    json={"worker": "h1-cpu0", "accelerator": "cpu", "state": "ready"})
    assert r.status_code == 200, r.text
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["problems"] == []
    assert r.json()["workers"]["cpu"] == {"alive": 1, "alive_workers": ["w1/h1-cpu0"],
                                          "starting": [], "unavailable": [], "silent": []}
    user = {"Authorization": f"Bearer {token('alice')}"}
    assert client.post("/api/v1/worker/presence", headers=user,
                       json={"accelerator": "cpu", "state": "ready"}).status_code in (401, 403)
    aliases = client.get("/api/v1/accelerators").json()["accelerators"][0]["aliases"]
    assert "t4" in aliases and "teslat4" in aliases
    reply = ws_exchange(client, json.dumps(message(submission={"accelerator": "NVIDIA TESLA T4"})))[0]
    assert reply["status"] == "queued" and "for cpu" in reply["output"]


def test_every_submission_gets_its_own_private_seed(make_client):
    client, service = make_client()
    ids = [ws_exchange(client, json.dumps(message()))[0]["submissionId"] for _ in range(5)]
    seeds = {service.store.get(i).seed for i in ids}
    assert len(seeds) == 5 and all(s > 0 for s in seeds)
    r = client.get(f"/api/v1/submissions/{ids[0]}", headers={"Authorization": f"Bearer {token('alice')}"})
    assert "seed" not in r.json()          # reported with the result, not before grading


def test_health_and_queued_submissions_say_when_no_worker_can_take_them(make_client):
    client, service = make_client()
    worker = {"Authorization": f"Bearer {token('w1')}"}
    reason = "cannot take its slot: cpu0 is already held by pid 4242 (/x/judge-cpu0.lock)"
    r = client.post("/api/v1/worker/presence", headers=worker,
                    json={"worker": "h1-cpu0", "accelerator": "cpu", "state": "unavailable",
                          "reason": reason})
    assert r.status_code == 200
    health = client.get("/healthz").json()
    assert health["status"] == "no_workers"
    assert health["workers"]["cpu"]["unavailable"] == [{"worker": "w1/h1-cpu0", "reason": reason}]
    assert "pid 4242" in health["problems"][0]
    # a submission queued now hears why nobody takes it, in its own stream
    with client.websocket_connect("/api/v1/ws/submit") as ws:
        ws.send_text(json.dumps(message()))
        first, second = json.loads(ws.receive_text()), json.loads(ws.receive_text())
    assert first["status"] == "queued" and "position 1" in first["output"]
    assert second["status"] == "queued"
    assert second["output"].startswith("no worker can take submissions for cpu: worker "
                                       "w1/h1-cpu0: cannot take its slot")
    assert "pid 4242" in second["output"] and "ends `interrupted`" in second["output"]
    # said once, however often the reaper looks
    sid = first["submissionId"]
    assert service.note_unserved() == 0
    assert [e.output for e in service.store.events(sid)].count(second["output"]) == 1
    # a worker that serves the queue makes it ok; nothing more is added
    client.post("/api/v1/worker/presence", headers=worker,
                json={"worker": "h2-cpu1", "accelerator": "cpu", "state": "ready"})
    assert client.get("/healthz").json()["status"] == "ok"
    assert service.note_unserved() == 0


def test_health_while_the_local_workers_start_and_when_one_gives_up(make_client):
    _, service = make_client()
    service.local_worker("cpu0", "cpu", "starting")
    health = service.health()
    assert health["status"] == "starting"
    assert health["problems"] == ["waiting for a worker for cpu: cpu0 is starting"]
    service.local_worker("cpu0", "cpu", "given up", "it exited with code 2")
    health = service.health()
    assert health["status"] == "no_workers"
    assert health["workers"]["cpu"]["unavailable"] == [{"worker": "cpu0",
                                                        "reason": "it exited with code 2"}]
    service.presence("w/h-cpu0", "cpu", "ready")
    assert service.health()["status"] == "ok"
    service.presence("w/h-cpu0", "cpu", "stopped")
    assert service.health()["status"] == "no_workers"


def test_the_loadtest_counts_an_exhausted_retry_budget_as_expected_not_as_a_failure():
    from benchmarks.judge_load import classify
    assert classify("accepted", "accepted", 1, chaos=True) == "right"
    assert classify("accepted", "interrupted", 3, chaos=True) == "retry budget"
    assert classify("accepted", "interrupted", 1, chaos=True).startswith("verdict interrupted")
    assert classify("accepted", "interrupted", 3, chaos=False).startswith("verdict interrupted")
    assert classify("accepted", "wrong_answer", 1, chaos=True) == (
        "verdict wrong_answer after 1 attempt(s), expected accepted")
