"""A worker's side of the fleet queue (Dramatiq on Redis): the submission ids of its
accelerator, each acknowledged only after its job. The API still decides who grades a
submission (the worker leases the id it read), so a redelivered message cannot grade twice."""

from __future__ import annotations

import threading

from runner.judge.broker import queue_name, redis_broker
from runner.policy import HEARTBEAT_TIMEOUT_MS, MAINTENANCE_CHANCE, QUEUE_NAMESPACE


class BrokerFeed:
    """A worker's side of the fleet queue: submission ids for one accelerator, each
    acknowledged by :meth:`done` after its job (or handed back with :meth:`give_back`)."""

    def __init__(self, redis_url: str, accelerator: str, namespace: str = QUEUE_NAMESPACE,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 maintenance_chance: int = MAINTENANCE_CHANCE):
        self.broker = redis_broker(redis_url, namespace, heartbeat_timeout_ms, maintenance_chance)
        self.queue = queue_name(accelerator)
        self.broker.declare_queue(self.queue)
        self.consumer = self.broker.consume(self.queue, prefetch=1, timeout=1000)
        self._lock = threading.Lock()

    def next(self):
        """The next message (its ``.args[0]`` is a submission id), or None after a short wait."""
        with self._lock:
            return next(self.consumer)

    def heartbeat(self) -> None:
        """Tell the broker this consumer is alive (a fetch of nothing), so that a long job is
        not redelivered to another worker while this one still holds it."""
        with self._lock:
            self.broker.do_fetch(self.queue, 0)

    def done(self, message) -> None:
        with self._lock:
            self.consumer.ack(message)

    def give_back(self, message) -> None:
        with self._lock:
            self.consumer.requeue([message])
            self.consumer.queued_message_ids.discard(message.message_id)

    def close(self) -> None:
        try:
            self.consumer.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            self.broker.close()
        except Exception:  # noqa: BLE001
            pass
