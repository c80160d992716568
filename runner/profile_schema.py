"""The strict shape of the child's ``profile`` message (:data:`runner.protocol.PROFILE`).

The message crosses the trust boundary: every field's type, every number's range (finite,
non-negative, bounded) and every list's and string's length is checked here before the grader
reads any of it; an extra key anywhere is malformed. A payload that fails is a protocol
violation like any other malformed message. No torch here (the protocol module is shared).
"""

from __future__ import annotations

import math
from typing import Any, Dict

MAX_KERNELS = 400
MAX_COPIES = 64
MAX_API = 48
MAX_NAME = 200
MAX_CSV_CHARS = 300_000
MAX_TEXT = 4_000
MAX_US = 1e10          # about three hours, in microseconds
MAX_COUNT = 10**9

TIMELINE_KEYS = {"call_us", "host_us", "gpu_busy_us", "kernels_total", "kernels",
                 "copies_total", "copies", "api"}
KERNEL_KEYS = {"name", "start_us", "dur_us", "grid", "block", "registers", "shared_bytes",
               "stream"}
COPY_KEYS = {"kind", "start_us", "dur_us", "bytes"}
NCU_KEYS = {"status", "csv", "exit_code", "message", "seconds"}
NCU_STATUSES = ("ok", "failed", "timeout")
PROFILE_KEYS = {"timeline", "timeline_error", "timeline_s", "ncu"}


def _num(v: Any, high: float = MAX_US) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and 0 <= v <= high)


def _int(v: Any, high: int = MAX_COUNT, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _str(v: Any, limit: int) -> bool:
    return isinstance(v, str) and len(v) <= limit


def _exact(d: Any, keys: set) -> bool:
    return isinstance(d, dict) and set(d) == keys


def _kernel(k: Any) -> bool:
    return (_exact(k, KERNEL_KEYS) and _str(k["name"], MAX_NAME) and _num(k["start_us"])
            and _num(k["dur_us"])
            and all(isinstance(d, list) and len(d) == 3 and all(_int(x, 2**31) for x in d)
                    for d in (k["grid"], k["block"]))
            and _int(k["registers"], 65_536) and _int(k["shared_bytes"], 2**31)
            and _int(k["stream"], 2**62))


def _copy(c: Any) -> bool:
    return (_exact(c, COPY_KEYS) and _str(c["kind"], 64) and _num(c["start_us"])
            and _num(c["dur_us"]) and _int(c["bytes"], 2**48))


def _api(a: Any) -> bool:
    return (isinstance(a, dict) and len(a) <= MAX_API
            and all(_str(name, 64) and _exact(v, {"count", "total_us"}) and _int(v["count"])
                    and _num(v["total_us"]) for name, v in a.items()))


def valid_timeline(t: Any) -> bool:
    return (_exact(t, TIMELINE_KEYS) and _num(t["call_us"]) and _num(t["host_us"])
            and _num(t["gpu_busy_us"]) and _int(t["kernels_total"]) and _int(t["copies_total"])
            and isinstance(t["kernels"], list) and len(t["kernels"]) <= MAX_KERNELS
            and len(t["kernels"]) <= t["kernels_total"] and all(_kernel(k) for k in t["kernels"])
            and isinstance(t["copies"], list) and len(t["copies"]) <= MAX_COPIES
            and len(t["copies"]) <= t["copies_total"] and all(_copy(c) for c in t["copies"])
            and _api(t["api"]))


def valid_ncu(n: Any) -> bool:
    return (_exact(n, NCU_KEYS) or (isinstance(n, dict) and set(n) == NCU_KEYS - {"exit_code"})) \
        and n["status"] in NCU_STATUSES and _str(n["csv"], MAX_CSV_CHARS) \
        and _str(n["message"], MAX_TEXT) and _num(n["seconds"], 86_400.0) \
        and _int(n.get("exit_code", 0), 255, -255)


def valid_profile(p: Dict[str, Any]) -> bool:
    """Whether ``p`` is a well-formed ``profile`` payload (the grader reads nothing else)."""
    if not isinstance(p, dict) or not set(p) <= PROFILE_KEYS:
        return False
    if "timeline" in p and not valid_timeline(p["timeline"]):
        return False
    if "timeline_error" in p and not _str(p["timeline_error"], 2000):
        return False
    if "timeline" not in p and "timeline_error" not in p:
        return False
    if "timeline_s" in p and not _num(p["timeline_s"], 86_400.0):
        return False
    return "ncu" not in p or valid_ncu(p["ncu"])
