"""``--action profile``, the grader's side: the report (text and JSON) built from the child's
``profile`` message, already checked against :mod:`runner.profile_schema`.

Everything in that message is a claim, shown to the user as information and never used for a
verdict or a rank. Where ncu may run and how its CSV is read: :mod:`runner.grader.profile.ncu`; the diagnosis
in words: :mod:`runner.grader.profile.diagnosis` (pure functions of the figures).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from runner.grader.profile.ncu import explain_ncu_failure, first_error, parse_ncu_csv
from runner.grader.profile.diagnosis import _fmt_us, _short, diagnose

SCHEMA_VERSION = 1
TOP_KERNELS = 4               # kernels whose counters are shown
NO_GPU = ("no GPU: nothing to profile (the timeline and counters come from a CUDA GPU; "
          "the tests above ran on the CPU)")

def build_profile(payload: Optional[Dict[str, Any]], context: Dict[str, Any],
                  ncu_reason: str = "") -> Dict[str, Any]:
    """The result's ``profile`` section from the child's (checked) payload and the grader's
    own figures; documented in docs/profile.md."""
    out: Dict[str, Any] = {"schema": SCHEMA_VERSION, "available": False,
                           "note": "information only: never used for the verdict or a rank",
                           "context": {k: context.get(k) for k in
                                       ("device", "sm_count", "floor_us", "ceiling_gbps",
                                        "bytes", "params")}}
    if payload is None:
        out["reason"] = context.get("reason") or "the submission's process sent no profile"
        return out
    timeline = payload.get("timeline")
    counters: List[Dict[str, Any]] = []
    ncu = payload.get("ncu")
    if ncu is None:
        out["counters_reason"] = ncu_reason or "Nsight Compute was not run"
    else:
        counters = parse_ncu_csv(ncu.get("csv", ""))
        out["ncu_seconds"] = ncu.get("seconds")
        if counters:
            counters.sort(key=lambda c: -(c.get("duration_us") or 0))
            _against_ceiling(counters, context.get("ceiling_gbps"))
            out["counters"] = counters[:TOP_KERNELS]
            out["counters_profiled"] = len(counters)
            if ncu.get("status") != "ok":
                out["counters_note"] = f"ncu ended {ncu.get('status')}: " + first_error(ncu)
        else:
            out["counters_reason"] = explain_ncu_failure(ncu)
    if timeline is None:
        out["reason"] = ("no timeline: the profiler failed in the submission's process: "
                         + str(payload.get("timeline_error", ""))[:300])
        return out
    out["available"] = True
    out["timeline_seconds"] = payload.get("timeline_s")
    kernels = timeline["kernels"]
    call_us = timeline["call_us"] or 1.0
    prev_end = 0.0
    rows = []
    for k in kernels:
        rows.append({**k, "share": k["dur_us"] / call_us,
                     "gap_before_us": max(0.0, k["start_us"] - prev_end)})
        prev_end = max(prev_end, k["start_us"] + k["dur_us"])
    by_name: Dict[str, Dict[str, Any]] = {}
    for k in kernels:
        entry = by_name.setdefault(k["name"], {"name": k["name"], "count": 0, "total_us": 0.0})
        entry["count"] += 1
        entry["total_us"] += k["dur_us"]
    out["timeline"] = {
        "call_us": timeline["call_us"], "host_us": timeline["host_us"],
        "gpu_busy_us": timeline["gpu_busy_us"],
        "gpu_idle_us": max(0.0, timeline["call_us"] - timeline["gpu_busy_us"]),
        "launches": timeline["kernels_total"], "kernels": rows,
        "kernels_listed": len(rows),
        "by_name": sorted(by_name.values(), key=lambda e: -e["total_us"])[:20],
        "copies": timeline["copies"], "copies_total": timeline["copies_total"],
        "api": timeline["api"]}
    out["diagnosis"] = diagnose(timeline, counters, context)
    return out


def _against_ceiling(counters: List[Dict[str, Any]], ceiling_gbps: Optional[float]) -> None:
    """Each kernel's DRAM rate under ncu (bytes read and written over its duration), and that
    against the device's measured ceiling (the grader's own figure)."""
    for c in counters:
        moved = (c.get("dram_read_bytes") or 0) + (c.get("dram_write_bytes") or 0)
        if moved and c.get("duration_us"):
            c["dram_gbps"] = moved / (c["duration_us"] * 1e3)
            if ceiling_gbps:
                c["dram_of_ceiling"] = c["dram_gbps"] / float(ceiling_gbps)


def _dim_text(dims: List[int]) -> str:
    """``[32, 1, 1]`` as ``32``, ``[8, 4, 1]`` as ``8x4``."""
    dims = list(dims)
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return "x".join(str(d) for d in dims)


def render_profile(profile: Dict[str, Any]) -> str:
    """The text report's profile section."""
    lines = ["  Profile (one call of solve on the performance case; information only, "
             "not part of the verdict):"]
    if not profile.get("available"):
        lines.append(f"    {profile.get('reason', 'not available')}")
        return "\n".join(lines)
    tl = profile["timeline"]
    lines.append(f"    call {_fmt_us(tl['call_us'])}: GPU busy {_fmt_us(tl['gpu_busy_us'])}, "
                 f"idle {_fmt_us(tl['gpu_idle_us'])}; host time in solve "
                 f"{_fmt_us(tl['host_us'])}; {tl['launches']} kernel launch"
                 f"{'es' if tl['launches'] != 1 else ''}")
    floor = profile.get("context", {}).get("floor_us")
    if floor:
        lines.append(f"    the measured floor of the case's bytes: {_fmt_us(floor)}")
    lines.append("    start      duration  share  gap before  grid x block   kernel")
    for k in tl["kernels"][:12]:
        grid, block = _dim_text(k["grid"]), _dim_text(k["block"])
        lines.append(f"    {k['start_us']:8.1f}us {k['dur_us']:8.1f}us {100 * k['share']:4.0f}% "
                     f"{k['gap_before_us']:9.1f}us  {grid:>6} x {block:<5} {_short(k['name'])}")
    if tl["launches"] > 12:
        lines.append(f"    ... {tl['launches'] - 12} more launches; by name:")
        for e in tl["by_name"][:5]:
            lines.append(f"      {e['count']:5d} x {_short(e['name'])}: {_fmt_us(e['total_us'])}")
    for name, v in list(tl["api"].items())[:6]:
        lines.append(f"    {name}: {v['count']} call{'s' if v['count'] != 1 else ''}, "
                     f"{_fmt_us(v['total_us'])}")
    for c in profile.get("counters", []):
        parts = [f"{_short(c.get('name', ''))}:"]
        if c.get("duration_us") is not None:
            parts.append(f"{_fmt_us(c['duration_us'])} under ncu;")
        if c.get("dram_pct_of_peak") is not None:
            parts.append(f"DRAM {c['dram_pct_of_peak']:.0f}% of peak"
                         + (f" ({c['dram_gbps']:,.0f} GB/s, {100 * c['dram_of_ceiling']:.0f}% of "
                            f"the measured ceiling)" if c.get("dram_of_ceiling") else "") + ";")
        if c.get("achieved_occupancy_pct") is not None:
            parts.append(f"occupancy {c['achieved_occupancy_pct']:.0f}%"
                         + (f" (limiter: {c['occupancy_limiter'].replace('_', ' ')})"
                            if c.get("occupancy_limiter") else "") + ";")
        if c.get("l2_hit_rate_pct") is not None:
            parts.append(f"L2 hits {c['l2_hit_rate_pct']:.0f}%;")
        if c.get("top_stalls"):
            parts.append("stalls: " + ", ".join(f"{s['reason']} {100 * s['share']:.0f}%"
                                                for s in c["top_stalls"]))
        lines.append("    counters: " + " ".join(parts))
    if profile.get("counters_reason"):
        lines.append(f"    counters: {profile['counters_reason']}")
    if profile.get("counters_note"):
        lines.append(f"    counters: {profile['counters_note']}")
    diagnosis = profile.get("diagnosis") or {}
    if diagnosis:
        lines.append(f"    diagnosis: {diagnosis['summary']}")
        for f in diagnosis.get("findings", [])[1:]:
            lines.append(f"      - {f['text']}")
    return "\n".join(lines)

