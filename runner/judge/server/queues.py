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

import threading
from typing import Optional, Protocol

from runner.judge.broker import ACTOR_NAME, queue_name, redis_broker
from runner.policy import HEARTBEAT_TIMEOUT_MS, MAINTENANCE_CHANCE, QUEUE_NAMESPACE


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


class DramatiqDispatcher:
    """Sends each queued submission's id to its accelerator's Dramatiq queue."""

    uses_broker = True

    def __init__(self, redis_url: str, namespace: str = QUEUE_NAMESPACE,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 maintenance_chance: int = MAINTENANCE_CHANCE, wakeup: Optional[Wakeup] = None):
        self.broker = redis_broker(redis_url, namespace, heartbeat_timeout_ms, maintenance_chance)
        self.wakeup = wakeup

    def dispatch(self, submission_id: str, accelerator: str) -> None:
        import dramatiq   # lazy: the judge extra, as in runner.judge.broker.redis_broker()

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
