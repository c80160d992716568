"""The fleet's Redis broker as both programs see it: the API dispatches submission ids to it
(:class:`runner.judge.server.queues.DramatiqDispatcher`), a worker consumes them
(:class:`runner.judge.worker.broker_feed.BrokerFeed`); they must agree on the queue names, the
actor name and how the broker is connected."""

from __future__ import annotations

import re

ACTOR_NAME = "judge_grade"


def queue_name(accelerator: str) -> str:
    """The Dramatiq queue of an accelerator (Dramatiq allows letters, digits, '_', '-', '.')."""
    return "judge." + (re.sub(r"[^A-Za-z0-9_-]+", "_", accelerator).strip("_") or "default")


def redis_broker(redis_url: str, namespace: str, heartbeat_timeout_ms: int,
                 maintenance_chance: int):
    try:
        from dramatiq.brokers.redis import RedisBroker
    except ImportError as exc:   # pragma: no cover - the judge extra installs it
        raise RuntimeError("the dramatiq queue backend needs dramatiq[redis]: "
                           "pip install -e '.[judge]'") from exc
    return RedisBroker(url=redis_url, namespace=namespace, middleware=[],
                       heartbeat_timeout=heartbeat_timeout_ms,
                       maintenance_chance=maintenance_chance)
