"""Probes of what a GPU's memory can really do, measured in the grader's own process.

The read probe streams a buffer four times the L2 cache with wide loads (a Triton kernel
where Triton is installed, else torch's reduction), with L2 flushed by reading between runs;
the copy probe times a device copy and counts read plus write. The faster of the two is the
ceiling that no honest time may beat (a kernel that writes as much as it reads, like a
quantize-on-store, can beat the pure read rate).

A case's floor (:func:`read_floor_ms`, :func:`mixed_floor_ms`) is the same kind of probe over
exactly the case's bytes, in the case's own mix of reads and writes: writes can end as dirty
lines in L2 that the end event does not wait for, so a probe with more writes than the case
would set it a floor it cannot reach.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Tuple

import torch


@functools.lru_cache(maxsize=1)
def read_kernel() -> Optional[Callable]:
    """The Triton probe kernel (``benchmarks/floor_probes.py`` times its variants), or None
    without Triton: one grid-stride pass that reads ``n_read`` int32 words of ``src`` (each
    lane's XOR into ``sink``) and, where ``WRITE``, writes ``n_write`` words of ``dst`` (word i
    gets ``src[i] ^ i``, 0 past n_read). Imported only when a GPU is probed:
    importing triton decides for the whole process whether its kernels run under the
    interpreter, which is the grading's choice (runner.languages.triton.prepare), not ours."""
    try:
        import triton
        import triton.language as tl
    except ImportError:  # pragma: no cover - triton is optional
        return None

    @triton.jit
    def read(src, dst, sink, n_read, n_write, n_words, BLOCK: tl.constexpr,
             UNROLL: tl.constexpr, WRITE: tl.constexpr = False, CACHE: tl.constexpr = ""):
        pid = tl.program_id(0)
        step = tl.num_programs(0) * BLOCK * UNROLL
        acc = tl.zeros([BLOCK], dtype=tl.int32)
        start = pid * BLOCK * UNROLL
        offs = tl.arange(0, BLOCK)
        while start < n_words:
            for u in tl.static_range(UNROLL):
                idx = start + u * BLOCK + offs
                x = tl.load(src + idx, mask=idx < n_read, other=0, cache_modifier=CACHE)
                acc ^= x
                if WRITE:
                    tl.store(dst + idx, x ^ idx, mask=idx < n_write)
            start += step
        tl.store(sink + pid * BLOCK + offs, acc)

    return read


def median_ms(run: Callable[[], None], flush: Callable[[], None], repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def measure_ceiling(device: torch.device) -> Tuple[float, str]:
    """(GB/s, how) for ``device``."""
    nbytes = max(4 * l2_bytes(device), 512 * 2**20)
    src = torch.ones(nbytes // 4, dtype=torch.int32, device=device)
    flush = read_flush(device, nbytes)

    results = []
    run = _triton_read(src, torch.cuda.get_device_properties(device).multi_processor_count)
    if run is not None:
        run()
        results.append((nbytes / (median_ms(run, flush) / 1e3) / 1e9, "Triton read probe"))
    run = _torch_read(src)
    run()
    results.append((nbytes / (median_ms(run, flush) / 1e3) / 1e9, "torch read probe"))
    dst = torch.empty_like(src)
    run = lambda: dst.copy_(src)  # noqa: E731
    run()
    results.append((2 * nbytes / (median_ms(run, flush) / 1e3) / 1e9, "copy probe (read + write)"))
    gbps, how = max(results)
    return gbps, f"{how}, {nbytes >> 20} MiB, read flush"


def _triton_read(src: torch.Tensor, sms: int) -> Optional[Callable[[], None]]:
    """A launch of the read kernel over the int32 words of ``src`` (None without Triton)."""
    return _triton_probe(src, src, src.numel(), 0, sms)


def _triton_probe(src: torch.Tensor, dst: torch.Tensor, n_read: int, n_write: int,
                  sms: int) -> Optional[Callable[[], None]]:
    """A launch of the probe kernel: reads ``src[:n_read]`` and writes ``dst[:n_write]`` (see
    :func:`read_kernel`) (None without Triton); ``run.sink`` holds each lane's XOR of the words
    it read (tests check the coverage)."""
    kernel = read_kernel()
    if kernel is None:
        return None
    n_words, block, unroll = max(n_read, n_write, 1), 1024, 4
    grid = (max(1, min(sms * 8, -(-n_words // (block * unroll)))),)
    sink = torch.empty(grid[0] * block, dtype=torch.int32, device=src.device)
    run = lambda: kernel[grid](src, dst, sink, n_read, n_write, n_words,  # noqa: E731
                               BLOCK=block, UNROLL=unroll, WRITE=n_write > 0, num_warps=8)
    run.sink = sink
    return run


def _torch_read(src: torch.Tensor) -> Callable[[], None]:
    """torch's reduction over the words of ``src``, read as int64."""
    sink = torch.empty((), dtype=torch.int64, device=src.device)
    as_int64 = src[: src.numel() // 2 * 2].view(torch.int64)
    return lambda: torch.sum(as_int64, dim=0, out=sink)


def read_flush(device: torch.device, nbytes: int) -> Callable[[], None]:
    """Reading ``nbytes`` (at least twice the L2 cache), so the next run finds none of its
    bytes there."""
    buf = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    sink = torch.empty((), dtype=torch.float32, device=device)
    return lambda: torch.sum(buf, dim=0, out=sink)


def l2_bytes(device: torch.device) -> int:
    return getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 50 * 2**20


# -- the floor of one case: the same probes over exactly the bytes the case must move ------------

def read_floor_ms(device: torch.device, nbytes: int) -> float:
    """Median ms to read ``nbytes`` with the read probe (L2 flushed by reading before each
    run): the fastest a kernel that must read those bytes can be."""
    src = torch.ones(max(2, nbytes // 4), dtype=torch.int32, device=device)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    run = _triton_read(src, sms) or _torch_read(src)
    run()
    return median_ms(run, read_flush(device, 2 * l2_bytes(device)))


def mixed_floor_ms(device: torch.device, nbytes: int, written: int) -> float:
    """Median ms of one kernel that moves ``nbytes`` in a case's own mix: it reads
    ``nbytes - written`` bytes and writes ``written`` (L2 flushed by reading before each run).
    Writes are cheap inside the timed window (they can end as dirty lines in L2 that the end
    event does not wait for), so only a probe with the case's share of them is its floor: a
    copy of half the bytes flatters a case that mostly reads."""
    n_read, n_write = max(0, nbytes - written) // 4, max(0, written) // 4
    src = torch.ones(max(1, n_read), dtype=torch.int32, device=device)
    dst = torch.empty(max(1, n_write), dtype=torch.int32, device=device)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    run = _triton_probe(src, dst, n_read, n_write, sms)
    if run is None:
        def run():
            if n_read:
                torch.sum(src[:n_read], dim=0)
            if n_write:
                dst[:n_write].fill_(1)
    run()
    return median_ms(run, read_flush(device, 2 * l2_bytes(device)))


def copy_floor_ms(device: torch.device, nbytes: int) -> float:
    """Median ms of a device copy that reads ``nbytes / 2`` and writes as much (L2 flushed by
    reading before each run). Shown by benchmarks beside the floor, not part of it: its writes
    end in L2 (see :func:`mixed_floor_ms`)."""
    src = torch.ones(max(1, nbytes // 2), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    run = lambda: dst.copy_(src)  # noqa: E731
    run()
    return median_ms(run, read_flush(device, 2 * l2_bytes(device)))
