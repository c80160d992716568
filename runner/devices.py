"""Choosing the grading device, and the peak rates of known GPUs for "% of peak" figures."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from runner import environment
from runner.errors import UsageError
from runner.probe import measure_ceiling, mixed_floor_ms, read_floor_ms


@dataclass(frozen=True)
class Peak:
    name: str
    dram_gbps: float      # memory bandwidth, GB/s (datasheet)
    fp32_tflops: float    # non-tensor FP32, TFLOP/s (datasheet)


# Matched by substring of torch.cuda.get_device_name(), most specific first.
KNOWN_PEAKS = [
    (("H200",), Peak("H200", 4800, 67)),
    (("H100", "PCIe"), Peak("H100 PCIe", 2000, 51)),
    (("H100", "NVL"), Peak("H100 NVL", 3900, 60)),
    (("H100",), Peak("H100 SXM", 3350, 67)),
    (("GH200",), Peak("GH200", 4000, 67)),
    (("B200",), Peak("B200", 8000, 80)),
    (("A100", "80GB"), Peak("A100 80GB", 2039, 19.5)),
    (("A100",), Peak("A100 40GB", 1555, 19.5)),
    (("A10G",), Peak("A10G", 600, 31.2)),
    (("L40S",), Peak("L40S", 864, 91.6)),
    (("L4",), Peak("L4", 300, 30.3)),
    (("T4",), Peak("T4", 320, 8.1)),
    (("V100",), Peak("V100", 900, 15.7)),
    (("RTX 4090",), Peak("RTX 4090", 1008, 82.6)),
    (("RTX 3090",), Peak("RTX 3090", 936, 35.6)),
]


def peak_for(device_name: str) -> Optional[Peak]:
    for needles, peak in KNOWN_PEAKS:
        if all(n in device_name for n in needles):
            return peak
    return None


def measured_copy_gbps(device: torch.device, nbytes: int = 512 * 2**20) -> float:
    """Device-to-device copy bandwidth (bytes read + written), for GPUs not in the table."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    end.synchronize()
    return 2 * nbytes * 10 / (start.elapsed_time(end) / 1e3) / 1e9


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is present, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is visible here "
                         "(use --device auto or cpu)")
    if requested not in ("cuda", "cpu"):
        raise UsageError(f"unknown device {requested!r}; choose auto, cuda or cpu")
    return torch.device(requested)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


# -- what the grader measures once per device and keeps: the ceiling, the floor of a case ------

@dataclass(frozen=True)
class Ceiling:
    gbps: float           # bytes per second / 1e9, the fastest of the probes
    source: str           # how it was measured


@dataclass(frozen=True)
class Floor:
    ms: float             # median of the faster probe over exactly these bytes
    source: str           # which probe, over how much


_KEPT: dict = {}          # cache file -> what was measured (this process)
CEILING_VERSION = 1
FLOOR_VERSION = 2       # 2: the second probe has the case's own share of writes


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name)


def _kept(path: Path, kind, measure: Callable[[], Optional[Any]], **about: Any):
    """What ``measure`` found (a ``kind``: a number and its source) the first time, kept in
    this process and as JSON at ``path`` (with ``about``); None, and nothing kept, when it
    found nothing."""
    if path in _KEPT:
        return _KEPT[path]
    number = fields(kind)[0].name
    try:
        data = json.loads(path.read_text())
        found = kind(float(data[number]), str(data["source"]))
    except (OSError, ValueError, KeyError, TypeError):
        found = measure()
        if found is None:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**asdict(found), **about}))
        except OSError:
            pass
    _KEPT[path] = found
    return found


def ceiling(device: torch.device) -> Optional[Ceiling]:
    """The device's measured memory ceiling (None on the CPU): the faster of a vectorized read
    of a large buffer (L2 flushed by reading in between) and a device copy counting read and
    write; measured once per device and kept in the cache folder."""
    if device.type != "cuda":
        return None
    name = describe(device)
    path = environment.cache_root() / "ceilings" / f"ceiling-v{CEILING_VERSION}-{_safe(name)}.json"
    return _kept(path, Ceiling, lambda: Ceiling(*measure_ceiling(device)), device=name)


def case_floor(device: torch.device, nbytes: int,
               written: Optional[int] = None) -> Optional[Floor]:
    """The floor of a case that moves ``nbytes`` on ``device``, ``written`` of them written
    (None: half) (None on the CPU, or where the probes cannot run): the faster of the read
    probe over those bytes and a probe that moves them in the case's own mix, each with L2
    flushed by reading. The mix matters: a kernel's writes can end as dirty lines in L2 that
    its end event does not wait for, so a copy of half the bytes (this floor's second probe
    until v2) flattered a case that mostly reads (96's 66 MiB on an H100: 21.7 us against the
    read probe's 25.8). Unlike the ceiling's rate, it includes the ramp and tail a launch of
    that size pays. Measured once per device, size and mix, and kept in the cache folder."""
    if device.type != "cuda" or nbytes <= 0:
        return None
    written = nbytes // 2 if written is None else max(0, min(int(written), nbytes))
    name = describe(device)
    path = (environment.cache_root() / "floors"
            / f"floor-v{FLOOR_VERSION}-{_safe(name)}-{nbytes}-w{written}.json")
    return _kept(path, Floor, lambda: _measure_floor(device, nbytes, written), device=name,
                 bytes=nbytes, written=written)


def _measure_floor(device: torch.device, nbytes: int, written: int) -> Optional[Floor]:
    try:
        probes = [(read_floor_ms(device, nbytes), "read probe")]
        if written:
            probes.append((mixed_floor_ms(device, nbytes, written),
                           f"read-write probe ({_mib(written)} MiB of them written)"))
    except torch.cuda.OutOfMemoryError:
        return None                     # no room beside the case: the ceiling's rate stands
    finally:
        torch.cuda.empty_cache()
    ms, how = min(probes)
    return Floor(ms, f"{how} over these {_mib(nbytes)} MiB, L2 flushed by reading")


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f}"
