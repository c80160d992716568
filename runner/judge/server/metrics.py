"""Prometheus metrics: queue depth per accelerator (read from the store at scrape time, so
every API process of a fleet reports the same figure), grading and queue-wait times,
outcomes, refusals, retries."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

TIME_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class _DepthCollector:
    def __init__(self, depths: Callable[[], Dict[Tuple[str, str], int]],
                 accelerators: Callable[[], Iterable[str]]):
        self._depths, self._accelerators = depths, accelerators

    def collect(self):
        depth = GaugeMetricFamily("judge_queue_depth", "Submissions waiting, per accelerator",
                                  labels=["accelerator"])
        running = GaugeMetricFamily("judge_running", "Submissions being graded, per accelerator",
                                    labels=["accelerator"])
        try:
            counts = self._depths()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store is down
            counts = {}
        for acc in self._accelerators():
            depth.add_metric([acc], counts.get((acc, "queued"), 0))
            running.add_metric([acc], counts.get((acc, "running"), 0))
        yield depth
        yield running


class Metrics:
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, depths: Callable[[], Dict[Tuple[str, str], int]],
                 accelerators: Callable[[], Iterable[str]]):
        self.registry = CollectorRegistry()
        self.registry.register(_DepthCollector(depths, accelerators))
        r = self.registry
        self.submissions = Counter("judge_submissions", "Submissions admitted", ["accelerator"],
                                   registry=r)
        self.refused = Counter("judge_refused", "Submissions refused before they were stored",
                               ["reason"], registry=r)
        self.outcomes = Counter("judge_outcomes", "Terminal results stored",
                                ["accelerator", "status", "verdict"], registry=r)
        self.grading_seconds = Histogram("judge_grading_seconds", "From a worker's claim to the "
                                         "stored result", ["accelerator"], buckets=TIME_BUCKETS,
                                         registry=r)
        self.queue_wait_seconds = Histogram("judge_queue_wait_seconds", "From admission to a "
                                            "worker's claim", ["accelerator"],
                                            buckets=TIME_BUCKETS, registry=r)
        self.retries = Counter("judge_retries", "Attempts taken back or released and queued "
                               "again", ["accelerator"], registry=r)
        self.rejected_results = Counter("judge_rejected_results", "Results refused (stale lease "
                                        "or already finished)", ["reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
