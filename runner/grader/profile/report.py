"""``--action profile``, the grader's side: the report (text and JSON) built from the child's
``profile`` message, already checked against :mod:`runner.profile_schema`; its text is
:mod:`runner.profile_text` (shared with the remote client).

Everything in that message is a claim, shown to the user as information and never used for a
verdict or a rank. Where ncu may run and how its CSV is read: :mod:`runner.grader.profile.ncu`; the diagnosis
in words: :mod:`runner.grader.profile.diagnosis` (pure functions of the figures).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from runner.grader.profile.ncu import explain_ncu_failure, first_error, parse_ncu_csv
from runner.grader.profile.diagnosis import diagnose

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
