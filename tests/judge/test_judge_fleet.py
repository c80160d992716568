"""The fleet path: PostgreSQL as the source of truth, Dramatiq on Redis delivering submission
ids per accelerator, CPU workers. Runs when $JUDGE_TEST_REDIS_URL and
$JUDGE_TEST_POSTGRES_URL reach servers (`.ci/run` starts them with deploy/test-services.sh);
skips otherwise."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import pytest

from judge_helpers import leetgpu_client, message, terminal_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _services():
    redis_url = os.environ.get("JUDGE_TEST_REDIS_URL")
    pg_url = os.environ.get("JUDGE_TEST_POSTGRES_URL")
    if not redis_url or not pg_url:
        pytest.skip("no Redis/PostgreSQL: set JUDGE_TEST_REDIS_URL and JUDGE_TEST_POSTGRES_URL "
                    "(eval \"$(bash deploy/test-services.sh start)\")")
    try:
        import psycopg
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP TABLE IF EXISTS submissions, events, admissions")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Redis or PostgreSQL is not reachable: {exc}")
    return redis_url, pg_url


@pytest.fixture
def fleet(judge_factory):
    redis_url, pg_url = _services()
    namespace = f"judge-test-{uuid.uuid4().hex[:8]}"
    judge = judge_factory(
        store={"url": pg_url},
        queue={"backend": "dramatiq", "redis_url": redis_url, "namespace": namespace,
               "heartbeat_timeout_ms": 1500, "maintenance_chance": 1_000_000,
               "repair_interval_s": 0.5})
    judge.broker_args = ["--redis-url", redis_url, "--namespace", namespace,
                         "--heartbeat-timeout-ms", "1500", "--maintenance-chance", "1000000"]
    judge.redis_url = redis_url
    judge.start_api()
    return judge


def test_fleet_grades_concurrent_submissions_once_each_with_a_worker_killed(fleet):
    for name in ("f1", "f2"):
        fleet.start_worker(name, extra=fleet.broker_args)
    files = ["correct.pytorch.py", "wrong.pytorch.py", "slow_solve.pytorch.py"] * 2
    expected = {"correct.pytorch.py": "accepted", "wrong.pytorch.py": "wrong_answer",
                "slow_solve.pytorch.py": "accepted"}
    logs = {}

    def send(k, file):
        logs[k] = (file, leetgpu_client(fleet.url, message(file), timeout=120))
    threads = [threading.Thread(target=send, args=(k, f)) for k, f in enumerate(files)]
    [t.start() for t in threads]
    time.sleep(4.0)
    fleet.kill_worker("f1")                   # mid-run: its job comes back through the lease
    fleet.start_worker("f3", extra=fleet.broker_args)
    [t.join(timeout=150) for t in threads]
    assert len(logs) == len(files), fleet.dump_logs()
    for file, log in logs.values():
        assert log[-1]["output"]["verdict"] == expected[file], (file, log[-1])
        assert len(terminal_events(fleet.events(log[-1]["submissionId"]))) == 1


def _redis_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_broker_killed_while_a_submission_is_queued(fleet):
    import redis

    sid = fleet.submit(message())             # stored in PostgreSQL, its id sent to Redis
    port = _redis_port(fleet.redis_url)
    pid = redis.Redis(port=port).info("server")["process_id"]
    os.kill(pid, 9)                           # the broker dies with the message (no persistence)
    time.sleep(0.5)
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "yes"], check=True, timeout=30)
    for _ in range(50):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    fleet.start_worker("after-broker-restart", extra=fleet.broker_args)
    terminal = fleet.wait_terminal(sid, timeout=60)  # the API's repair loop sends it again
    assert terminal["status"] == "success"
    assert len(terminal_events(fleet.events(sid))) == 1
