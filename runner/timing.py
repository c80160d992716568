"""Timing GPU work fairly: CUDA events, a read-based L2 flush, rotation, adaptive repeats.

Why a *read* flush: flushing L2 by writing a big buffer (what ``triton.testing.do_bench`` does
with ``zero_()``) leaves tens of MB of dirty lines, whose write-back is then billed to the timed
kernel (about 8 us on a 26 us kernel on the H100). Reading leaves clean lines, so the timed
call pays only for its own traffic.

Why a launch cover: what is timed is the GPU's work, as it runs in a serving loop under CUDA
graphs, not the Python and driver time it takes to enqueue it. A Python ``solve`` (Triton, CuPy,
PyTorch) can spend 20-150 us on the host before its first kernel starts; if the GPU has drained
by then, that idle time lands between the events. So before the start event the stream gets a
spin kernel (``torch.cuda._sleep``) sized to twice the call's measured host time, and the
launches queue up behind it. A ``solve`` that waits for the GPU itself (a synchronize, a copy
to the host) would wait for the spin too; that is detected (its host time reaches the spin's)
and such a solution is timed without the cover, so host work it waits on is billed.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

import torch

from runner.policy import (FLUSH_MIN_BYTES, LINGER_MIN_S, MAX_TIMED_RUNS, MIN_TIMED_RUNS,
                           TARGET_REL_SEM, TIME_BUDGET_S, WARMUP_RUNS)

# Captured when the harness is imported, before any submission code runs: a solution that
# replaces torch.cuda.Event.elapsed_time or time.perf_counter does not change our clock, and
# :func:`timing_tampering` notices the attempt.
_Event = torch.cuda.Event
_ELAPSED = torch.cuda.Event.elapsed_time
_RECORD = torch.cuda.Event.record
_EVENT_SYNC = torch.cuda.Event.synchronize
_SYNC = torch.cuda.synchronize
_SLEEP = torch.cuda._sleep
_PERF_COUNTER = time.perf_counter
_ORIGINALS = {
    "torch.cuda.Event": (lambda: torch.cuda.Event, _Event),
    "torch.cuda.Event.elapsed_time": (lambda: torch.cuda.Event.elapsed_time, _ELAPSED),
    "torch.cuda.Event.record": (lambda: torch.cuda.Event.record, _RECORD),
    "torch.cuda.Event.synchronize": (lambda: torch.cuda.Event.synchronize, _EVENT_SYNC),
    "torch.cuda.synchronize": (lambda: torch.cuda.synchronize, _SYNC),
    "torch.cuda._sleep": (lambda: torch.cuda._sleep, _SLEEP),
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
    mode: str = "events"     # "events"; "device-sync" when work outlived the current stream;
    #                          "isolated" when it does not wait for the current stream at all
    flush: str = "read"
    host_us: float = 0.0     # median host time of one call (enqueueing its work)
    launch_cover: bool = True   # False when the call waits for the GPU itself
    samples_ms: List[float] = field(default_factory=list)   # every run kept, in order
    run_ids: List[int] = field(default_factory=list)        # the run index of each sample

    def to_dict(self) -> dict:
        return asdict(self)


def flush_bytes(device: torch.device, min_bytes: int = FLUSH_MIN_BYTES) -> int:
    """The bytes the timed runs' flush reads on ``device``: four times its L2, 256 MiB at least."""
    props = torch.cuda.get_device_properties(device)
    l2 = getattr(props, "L2_cache_size", 0) or 50 * 2**20
    return max(4 * l2, min_bytes)


class L2Flusher:
    """Evicts L2 by reading a buffer several times its size (clean lines, no write-back)."""

    def __init__(self, device: torch.device, min_bytes: int = FLUSH_MIN_BYTES):
        size = flush_bytes(device, min_bytes)
        self._buffer = torch.ones(size // 4, dtype=torch.float32, device=device)
        self._sink = torch.empty((), dtype=torch.float32, device=device)

    def __call__(self) -> None:
        torch.sum(self._buffer, dim=0, out=self._sink)

    def sized(self, nbytes: int) -> Callable[[], None]:
        """A flush that reads only the first ``nbytes`` of the buffer (all of it at most)."""
        part = self._buffer[:max(1, min(self._buffer.numel(), int(nbytes) // 4))]
        sink = self._sink
        return lambda: torch.sum(part, dim=0, out=sink)


def burst_loop(calls: int, prepare: Callable[[int], None], solve: Optional[Callable[[int], None]],
               flush: Callable[[], None], *, isolate: bool = False, sync_every: int = 0,
               sync: Callable[[], None] = lambda: None) -> None:
    """The calls of one burst of the grader's clock, in the order the timed runs make them:
    ``prepare(j)`` (the input copy rewritten for call j), the flush, ``solve(j)``. A *null*
    burst (``solve`` None) is the same work without the solve: the grader's clock takes the
    difference. ``isolate``: the device drained before each rewrite and again before the solve
    (a solve whose work does not wait for the current stream); ``sync_every``: drained before
    every ``sync_every``-th rewrite (a solve whose work outlives the current stream: it never
    reads a copy being rewritten). The child and the grader run this same loop."""
    for j in range(calls):
        if isolate or (sync_every and j and j % sync_every == 0):
            sync()
        prepare(j)
        flush()
        if isolate:
            sync()
        if solve is not None:
            solve(j)


class LaunchCover:
    """A spin kernel ahead of the start event, long enough to cover the host time of a call."""

    MAX_US = 20_000.0

    def __init__(self):
        start, end = _Event(enable_timing=True), _Event(enable_timing=True)
        cycles = 2_000_000
        _SLEEP(cycles // 10)   # warm-up
        _RECORD(start)
        _SLEEP(cycles)
        _RECORD(end)
        _EVENT_SYNC(end)
        self.cycles_per_us = cycles / max(_ELAPSED(start, end) * 1e3, 1.0)
        self.enabled = True
        self.recent_host_us: List[float] = []
        self.waited: List[bool] = []

    def spin_us(self) -> float:
        if not self.enabled or not self.recent_host_us:
            return 0.0
        return min(2.0 * max(self.recent_host_us[-8:]) + 20.0, self.MAX_US)

    def __call__(self) -> float:
        """Enqueue the spin; returns its length in us."""
        spin = self.spin_us()
        if spin > 0:
            _SLEEP(int(spin * self.cycles_per_us))
        return spin

    def observe(self, host_us: float, spin_us: float) -> bool:
        """Record a call's host time; False when the call has now waited for the spin (so it
        synchronizes with the GPU) in 3 of the last 5 runs, which turns the cover off. One
        slow call can be host jitter; a synchronizing call waits every time."""
        self.recent_host_us.append(host_us)
        self.waited.append(spin_us > 0 and host_us >= 0.8 * spin_us)
        if sum(self.waited[-5:]) >= 3:
            self.enabled = False
            return False
        return True


def stats(samples_ms: List[float], mode: str = "events", host_us: Optional[List[float]] = None,
          launch_cover: bool = True, run_ids: Optional[List[int]] = None,
          flush: str = "read") -> Timing:
    n = len(samples_ms)
    mean = statistics.fmean(samples_ms)
    std = statistics.stdev(samples_ms) if n > 1 else 0.0
    return Timing(median_ms=statistics.median(samples_ms), mean_ms=mean, min_ms=min(samples_ms),
                  std_ms=std, runs=n, rel_sem=(std / math.sqrt(n) / mean) if mean > 0 else 0.0,
                  mode=mode, host_us=statistics.median(host_us) if host_us else 0.0,
                  launch_cover=launch_cover, samples_ms=list(samples_ms),
                  run_ids=list(run_ids if run_ids is not None else range(n)), flush=flush)


def time_host(call: Callable[[int], None], *, before: Optional[Callable[[int], None]] = None,
              after: Optional[Callable[[int], None]] = None, min_runs: int = 5,
              max_runs: int = MAX_TIMED_RUNS, budget_s: float = TIME_BUDGET_S,
              target_rel_sem: float = TARGET_REL_SEM,
              **_: object) -> Timing:
    """``call(i)`` timed on the host clock (a CPU grading asked to time, as tests do)."""
    samples: List[float] = []
    deadline = _PERF_COUNTER() + budget_s
    i = 0
    while True:
        if before:
            before(i)
        t0 = _PERF_COUNTER()
        call(i)
        samples.append((_PERF_COUNTER() - t0) * 1e3)
        if after:
            after(i)
        i += 1
        if len(samples) >= max_runs or (len(samples) >= min_runs and (
                stats(samples).rel_sem < target_rel_sem or _PERF_COUNTER() > deadline)):
            break
    return stats(samples, mode="host", host_us=[s * 1e3 for s in samples], launch_cover=False,
                 flush="none")


def time_cuda(call: Callable[[int], None], *, before: Optional[Callable[[int], None]] = None,
              after: Optional[Callable[[int], None]] = None, warmup_runs: int = WARMUP_RUNS,
              min_runs: int = MIN_TIMED_RUNS, max_runs: int = MAX_TIMED_RUNS,
              budget_s: float = TIME_BUDGET_S, target_rel_sem: float = TARGET_REL_SEM,
              flusher: Optional[L2Flusher] = None, cover_launches: bool = True,
              isolate: bool = False) -> Timing:
    """Time ``call(i)`` (run ``i``) with CUDA events until the estimate is stable.

    ``before(i)`` and ``after(i)`` run outside the timed region (poisoning outputs, checking
    them). Each run: before, flush L2, launch cover, start event, call, end event, then a
    device-wide synchronize. If the device still had work when the end event completed (the
    solution launched on another stream and did not join it), the run is re-timed with the end
    event recorded after a device-wide synchronize, so that work is billed. ``isolate`` (a
    solve whose work does not wait for the current stream, e.g. a non-blocking stream of its
    own): no launch cover, the device drained before the start event and again before the end
    event, so the call's host time and all its work are billed, and its inputs are complete.
    """
    device = torch.cuda.current_device()
    flusher = flusher or L2Flusher(torch.device("cuda", device))
    cover = LaunchCover() if cover_launches and not isolate else None
    for i in range(warmup_runs):
        if before:
            before(i)
        t0 = _PERF_COUNTER()
        call(i)
        if cover:
            cover.observe((_PERF_COUNTER() - t0) * 1e6, 0.0)
        if after:
            after(i)
    _SYNC()

    samples: List[float] = []
    host_us: List[float] = []
    run_ids: List[int] = []
    lingering_runs: List[bool] = []
    mode = "isolated" if isolate else "events"
    deadline = _PERF_COUNTER() + budget_s
    i = 0
    while True:
        if before:
            before(i)
        flusher()
        start, end = _Event(enable_timing=True), _Event(enable_timing=True)
        spin_us = cover() if cover else 0.0
        if mode == "isolated":
            _SYNC()
        _RECORD(start)
        t0 = _PERF_COUNTER()
        call(i)
        call_us = (_PERF_COUNTER() - t0) * 1e6
        if mode in ("device-sync", "isolated"):
            _SYNC()
        _RECORD(end)
        _EVENT_SYNC(end)
        t0 = _PERF_COUNTER()
        _SYNC()
        lingering_s = _PERF_COUNTER() - t0
        elapsed = _ELAPSED(start, end)
        if cover and cover.enabled and not cover.observe(call_us, spin_us):
            samples, host_us, run_ids = [], [], []   # restart without the cover: the call
            i += 1                                   # waits for the GPU
            continue
        if mode == "events":
            # work still running after the end event: the solution launched on another stream
            # and returned without joining it. One slow synchronize can be host jitter, so
            # only a pattern (3 of the last 5 runs) switches to device-synchronized timing.
            lingering_runs.append(lingering_s > max(LINGER_MIN_S, 0.5 * elapsed / 1e3))
            if sum(lingering_runs[-5:]) >= 3:
                mode, samples, host_us, run_ids = "device-sync", [], [], []  # restart: samples
                i += 1                                                     # missed work
                continue
        samples.append(elapsed)
        host_us.append(call_us)
        run_ids.append(i)
        if after:
            after(i)
        i += 1
        if len(samples) >= max_runs:
            break
        if len(samples) >= min_runs:
            if stats(samples).rel_sem < target_rel_sem or _PERF_COUNTER() > deadline:
                break
    return stats(samples, mode, host_us, launch_cover=bool(cover and cover.enabled),
                 run_ids=run_ids)


_CODE = {f: f.__code__ for f in (time_cuda, time_host, stats, LaunchCover.__call__,
                                  LaunchCover.observe, burst_loop)}
