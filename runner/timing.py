"""Timing GPU work fairly: CUDA events, a read-based L2 flush, rotation, adaptive repeats.

Why a *read* flush: flushing L2 by writing a big buffer (what ``triton.testing.do_bench`` does
with ``zero_()``) leaves tens of MB of dirty lines, whose write-back is then billed to the timed
kernel (about 8 us on a 26 us kernel on the H100). Reading leaves clean lines, so the timed
call pays only for its own traffic. The flush also keeps the GPU busy while the host enqueues
the start event and the solution's launches, so launch latency is not billed either.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional

import torch


LINGER_MIN_S = 100e-6

# Captured when the harness is imported, before any submission code runs: a solution that
# replaces torch.cuda.Event.elapsed_time or time.perf_counter does not change our clock, and
# :func:`timing_tampering` notices the attempt.
_Event = torch.cuda.Event
_ELAPSED = torch.cuda.Event.elapsed_time
_RECORD = torch.cuda.Event.record
_EVENT_SYNC = torch.cuda.Event.synchronize
_SYNC = torch.cuda.synchronize
_PERF_COUNTER = time.perf_counter
_ORIGINALS = {
    "torch.cuda.Event": (lambda: torch.cuda.Event, _Event),
    "torch.cuda.Event.elapsed_time": (lambda: torch.cuda.Event.elapsed_time, _ELAPSED),
    "torch.cuda.Event.record": (lambda: torch.cuda.Event.record, _RECORD),
    "torch.cuda.Event.synchronize": (lambda: torch.cuda.Event.synchronize, _EVENT_SYNC),
    "torch.cuda.synchronize": (lambda: torch.cuda.synchronize, _SYNC),
    "time.perf_counter": (lambda: time.perf_counter, _PERF_COUNTER),
}


def timing_tampering() -> str:
    """Names of timing functions that are no longer the originals ('' when none)."""
    changed = [name for name, (current, original) in _ORIGINALS.items() if current() is not original]
    code_changed = [f.__name__ for f, code in _CODE.items() if f.__code__ is not code]
    return ", ".join(changed + code_changed)


@dataclass
class Timing:
    median_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    runs: int
    rel_sem: float           # standard error of the mean / mean
    mode: str = "events"     # "events", or "device-sync" when work outlived the current stream
    flush: str = "read"

    def to_dict(self) -> dict:
        return asdict(self)


class L2Flusher:
    """Evicts L2 by reading a buffer several times its size (clean lines, no write-back)."""

    def __init__(self, device: torch.device):
        props = torch.cuda.get_device_properties(device)
        l2 = getattr(props, "L2_cache_size", 0) or 50 * 2**20
        size = max(4 * l2, 256 * 2**20)
        self._buffer = torch.ones(size // 4, dtype=torch.float32, device=device)
        self._sink = torch.empty((), dtype=torch.float32, device=device)

    def __call__(self) -> None:
        torch.sum(self._buffer, dim=0, out=self._sink)


def stats(samples_ms: List[float], mode: str = "events") -> Timing:
    n = len(samples_ms)
    mean = statistics.fmean(samples_ms)
    std = statistics.stdev(samples_ms) if n > 1 else 0.0
    return Timing(median_ms=statistics.median(samples_ms), mean_ms=mean, min_ms=min(samples_ms),
                  std_ms=std, runs=n, rel_sem=(std / math.sqrt(n) / mean) if mean > 0 else 0.0,
                  mode=mode)


def time_cuda(call: Callable[[int], None], *, before: Optional[Callable[[int], None]] = None,
              after: Optional[Callable[[int], None]] = None, warmup_runs: int = 3,
              min_runs: int = 10, max_runs: int = 1000, budget_s: float = 3.0,
              target_rel_sem: float = 0.01, flusher: Optional[L2Flusher] = None) -> Timing:
    """Time ``call(i)`` (run ``i``) with CUDA events until the estimate is stable.

    ``before(i)`` and ``after(i)`` run outside the timed region (poisoning outputs, checking
    them). Each run: before, flush L2, start event, call, end event, then a device-wide
    synchronize. If the device still had work when the end event completed (the solution
    launched on another stream and did not join it), the run is re-timed with the end event
    recorded after a device-wide synchronize, so that work is billed.
    """
    device = torch.cuda.current_device()
    flusher = flusher or L2Flusher(torch.device("cuda", device))
    for i in range(warmup_runs):
        if before:
            before(i)
        call(i)
        if after:
            after(i)
    _SYNC()

    samples: List[float] = []
    lingering_runs: List[bool] = []
    mode = "events"
    deadline = _PERF_COUNTER() + budget_s
    i = 0
    while True:
        if before:
            before(i)
        flusher()
        start, end = _Event(enable_timing=True), _Event(enable_timing=True)
        _RECORD(start)
        call(i)
        if mode == "device-sync":
            _SYNC()
        _RECORD(end)
        _EVENT_SYNC(end)
        t0 = _PERF_COUNTER()
        _SYNC()
        lingering_s = _PERF_COUNTER() - t0
        elapsed = _ELAPSED(start, end)
        if mode == "events":
            # work still running after the end event: the solution launched on another stream
            # and returned without joining it. One slow synchronize can be host jitter, so
            # only a pattern (3 of the last 5 runs) switches to device-synchronized timing.
            lingering_runs.append(lingering_s > max(LINGER_MIN_S, 0.5 * elapsed / 1e3))
            if sum(lingering_runs[-5:]) >= 3:
                mode, samples = "device-sync", []  # restart: the earlier samples missed work
                continue
        samples.append(elapsed)
        if after:
            after(i)
        i += 1
        if len(samples) >= max_runs:
            break
        if len(samples) >= min_runs:
            if stats(samples).rel_sem < target_rel_sem or _PERF_COUNTER() > deadline:
                break
    return stats(samples, mode)


_CODE = {f: f.__code__ for f in (time_cuda, stats)}
