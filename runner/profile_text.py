"""The text of a profile section (``--action profile``), shared by the CLI's report and the
remote client: display only, from the section's JSON (built on the grader's side by
:mod:`runner.grader.profile.report`)."""

from __future__ import annotations

import re
from typing import Any, Dict, List


def us_text(us: float) -> str:
    """Microseconds as ``12.3 us``, or ``4.5 ms`` from a millisecond up."""
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.1f} us"


def short_name(name: str, limit: int = 60) -> str:
    """A kernel's name without its parameters and ``void``, cut to ``limit`` characters."""
    base = name.split("(")[0].strip() or name
    base = re.sub(r"^void\s+", "", base)
    return base if len(base) <= limit else base[:limit - 3] + "..."


def dim_text(dims: List[int]) -> str:
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
    lines.append(f"    call {us_text(tl['call_us'])}: GPU busy {us_text(tl['gpu_busy_us'])}, "
                 f"idle {us_text(tl['gpu_idle_us'])}; host time in solve "
                 f"{us_text(tl['host_us'])}; {tl['launches']} kernel launch"
                 f"{'es' if tl['launches'] != 1 else ''}")
    floor = profile.get("context", {}).get("floor_us")
    if floor:
        lines.append(f"    the measured floor of the case's bytes: {us_text(floor)}")
    lines.append("    start      duration  share  gap before  grid x block   kernel")
    for k in tl["kernels"][:12]:
        grid, block = dim_text(k["grid"]), dim_text(k["block"])
        lines.append(f"    {k['start_us']:8.1f}us {k['dur_us']:8.1f}us {100 * k['share']:4.0f}% "
                     f"{k['gap_before_us']:9.1f}us  {grid:>6} x {block:<5} {short_name(k['name'])}")
    if tl["launches"] > 12:
        lines.append(f"    ... {tl['launches'] - 12} more launches; by name:")
        for e in tl["by_name"][:5]:
            lines.append(f"      {e['count']:5d} x {short_name(e['name'])}: {us_text(e['total_us'])}")
    for name, v in list(tl["api"].items())[:6]:
        lines.append(f"    {name}: {v['count']} call{'s' if v['count'] != 1 else ''}, "
                     f"{us_text(v['total_us'])}")
    for c in profile.get("counters", []):
        parts = [f"{short_name(c.get('name', ''))}:"]
        if c.get("duration_us") is not None:
            parts.append(f"{us_text(c['duration_us'])} under ncu;")
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

