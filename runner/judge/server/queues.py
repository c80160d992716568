"""Delivering queued submissions to workers.

- Embedded (one machine): the store is the queue. Workers long-poll the API's claim endpoint,
  which leases the oldest queued submission for their accelerator; :class:`Wakeup` lets a
  waiting claim return as soon as a submission arrives.
- Fleet: Dramatiq's Redis broker, one queue per accelerator (routing), messages acknowledged
  only after the job (a worker that dies holding one has it redelivered by the broker's
  maintenance once its heartbeat is older than ``heartbeat_timeout_ms``). The message carries
  only the submission id: the store still decides who grades it (a worker leases that id
  through the API, which refuses when it is not queued), so a redelivered or duplicated
  message cannot grade a submission twice, and the API re-dispatches queued submissions the
  broker lost (``repair_interval_s``).
"""

from __future__ import annotations

import re
import threading
from typing import Optional, Protocol

ACTOR_NAME = "judge_grade"


class Dispatcher(Protocol):
    def dispatch(self, submission_id: str, accelerator: str) -> None: ...

    def close(self) -> None: ...


class Wakeup:
    """Wakes long-polling claims in this process when work may have arrived."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self._cond:
            start = self._generation
            self._cond.wait_for(lambda: self._generation != start, timeout=timeout)


class EmbeddedDispatcher:
    """The store is the queue: dispatching only wakes the waiting claims."""

    uses_broker = False

    def __init__(self, wakeup: Wakeup):
        self.wakeup = wakeup

    def dispatch(self, submission_id: str, accelerator: str) -> None:
        self.wakeup.notify()

    def close(self) -> None:
        pass


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


class DramatiqDispatcher:
    """Sends each queued submission's id to its accelerator's Dramatiq queue."""

    uses_broker = True

    def __init__(self, redis_url: str, namespace: str = "judge", heartbeat_timeout_ms: int = 60_000,
                 maintenance_chance: int = 1000, wakeup: Optional[Wakeup] = None):
        self.broker = redis_broker(redis_url, namespace, heartbeat_timeout_ms, maintenance_chance)
        self.wakeup = wakeup

    def dispatch(self, submission_id: str, accelerator: str) -> None:
        import dramatiq

        name = queue_name(accelerator)
        self.broker.declare_queue(name)
        self.broker.enqueue(dramatiq.Message(queue_name=name, actor_name=ACTOR_NAME,
                                             args=(submission_id,), kwargs={}, options={}))
        if self.wakeup is not None:
            self.wakeup.notify()

    def close(self) -> None:
        try:
            self.broker.close()
        except Exception:  # noqa: BLE001 - closing a broker whose server is gone
            pass


class BrokerFeed:
    """A worker's side of the fleet queue: submission ids for one accelerator, each
    acknowledged by :meth:`done` after its job (or handed back with :meth:`give_back`)."""

    def __init__(self, redis_url: str, accelerator: str, namespace: str = "judge",
                 heartbeat_timeout_ms: int = 60_000, maintenance_chance: int = 1000):
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

