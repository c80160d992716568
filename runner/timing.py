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
    torch.cuda.synchronize()

    samples: List[float] = []
    lingering_runs: List[bool] = []
    mode = "events"
    deadline = time.perf_counter() + budget_s
    i = 0
    while True:
        if before:
            before(i)
        flusher()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(i)
        if mode == "device-sync":
            torch.cuda.synchronize()
        end.record()
        end.synchronize()
        t0 = time.perf_counter()
        torch.cuda.synchronize()
        lingering_s = time.perf_counter() - t0
        elapsed = start.elapsed_time(end)
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
            if stats(samples).rel_sem < target_rel_sem or time.perf_counter() > deadline:
                break
    return stats(samples, mode)
