"""The diagnosis of ``--action profile``: pure functions of the figures (a timeline, ncu's
parsed counters, the grader's own SM count and measured floor), in words, tested on the CPU
with synthetic timelines."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from runner.profile_text import short_name, us_text


def _blocks(k: Dict[str, Any]) -> int:
    g = k.get("grid") or [0, 0, 0]
    return int(g[0]) * int(g[1]) * int(g[2])


def _api_calls(api: Dict[str, Dict[str, Any]], *parts: str, exclude: Tuple[str, ...] = ()):
    hits = {n: v for n, v in api.items()
            if any(p in n for p in parts) and not any(x in n for x in exclude)}
    return (sum(v["count"] for v in hits.values()), sum(v["total_us"] for v in hits.values()),
            sorted(hits, key=lambda n: -hits[n]["count"]))


def diagnose(timeline: Dict[str, Any], counters: List[Dict[str, Any]],
             context: Dict[str, Any]) -> Dict[str, Any]:
    """``{"bottleneck", "summary", "findings": [{"kind", "text"}]}`` from a timeline (the
    ``profile`` message's, checked), ncu's parsed counters (may be empty) and what the grader
    knows itself (``sm_count``, ``floor_us``, ``ceiling_gbps``, ``bytes``)."""
    findings: List[Dict[str, str]] = []
    kernels = timeline.get("kernels", [])
    launches = int(timeline.get("kernels_total", len(kernels)))
    call_us = float(timeline.get("call_us", 0.0))
    busy_us = float(timeline.get("gpu_busy_us", 0.0))
    host_us = float(timeline.get("host_us", 0.0))
    api = timeline.get("api", {})
    copies = timeline.get("copies", [])
    sm_count = int(context.get("sm_count") or 0)
    floor_us = context.get("floor_us")
    busy_share = busy_us / call_us if call_us > 0 else 0.0

    n_alloc, alloc_us, alloc_names = _api_calls(api, "Malloc", "MemAlloc",
                                                exclude=("Host", "Managed", "Async"))
    n_async_alloc, _, _ = _api_calls(api, "MallocAsync", "MemAllocAsync")
    if n_alloc:
        findings.append({"kind": "allocation", "text": (
            f"allocates device memory in every call: {n_alloc} {alloc_names[0]} "
            f"({us_text(alloc_us)}) inside solve; allocate once and reuse the buffer "
            f"(or let torch's caching allocator hand it out)")})
    elif n_async_alloc:
        findings.append({"kind": "allocation", "text": (
            f"allocates from a stream-ordered pool in every call ({n_async_alloc} "
            f"cudaMallocAsync); cheaper than cudaMalloc, but a buffer made once costs nothing")})
    n_sync, sync_us, sync_names = _api_calls(api, "Synchronize")
    if n_sync:
        findings.append({"kind": "synchronization", "text": (
            f"waits for the GPU inside solve: {n_sync} {sync_names[0]} ({us_text(sync_us)}); "
            f"the host launches nothing while it waits; the grader synchronizes after the call, "
            f"so solve need not")})
    to_host = [c for c in copies if "DtoH" in c["kind"] or "Device -> Pageable" in c["kind"]
               or "Device -> Pinned" in c["kind"]]
    if to_host:
        findings.append({"kind": "copy-to-host", "text": (
            f"copies to the host inside solve ({len(to_host)} "
            f"cop{'ies' if len(to_host) != 1 else 'y'}, "
            f"{sum(c['bytes'] for c in to_host):,} bytes): each one waits for the GPU to drain; "
            f"keep data and decisions on the GPU")})
    n_copies = int(timeline.get("copies_total", len(copies))) - len(to_host)
    if n_copies > 0:
        nbytes = sum(c["bytes"] for c in copies if c not in to_host)
        findings.append({"kind": "copies", "text": (
            f"{n_copies} device copies or memsets inside solve ({nbytes:,} bytes listed): "
            f"each is a pass over memory that a kernel could fuse")})

    if launches == 0:
        bottleneck = "host"
        summary = (f"no kernel ran on the GPU during the call ({us_text(call_us)} on the host): "
                   f"is the work done on the CPU?")
        findings.insert(0, {"kind": "no-kernels", "text": summary})
        return {"bottleneck": bottleneck, "summary": summary, "findings": findings}

    # the host's time before the first GPU work is what a launch cover (the grader's timing,
    # CUDA graphs in a serving loop) hides; the GPU idle *between* its work is not hidden
    starts = [k["start_us"] for k in kernels] + [c["start_us"] for c in copies]
    lead_us = min(starts) if starts else 0.0
    span_us = max(call_us - lead_us, 1e-9)
    span_share = min(1.0, busy_us / span_us)
    gaps_us = max(0.0, span_us - busy_us)
    waits = bool(n_alloc or n_sync or to_host)
    if span_share < 0.5 or (waits and host_us > busy_us):
        bottleneck = "host"
        if span_share < 0.5 and launches >= 8:
            summary = (f"host-bound: {launches} launches per call; the GPU is busy "
                       f"{100 * busy_share:.0f}% of the call's {us_text(call_us)} and idles "
                       f"{us_text(gaps_us / max(launches - 1, 1))} between one kernel and the "
                       f"next")
            advice = ("fuse the kernels into fewer launches (or capture them in a CUDA graph); "
                      "loops over heads or tokens belong inside a kernel")
        elif span_share < 0.5:
            summary = (f"host-bound: the GPU is busy {100 * busy_share:.0f}% of the call's "
                       f"{us_text(call_us)}; it idles {us_text(gaps_us)} between its "
                       f"{launches} launch{'es' if launches > 1 else ''} while the host works")
            advice = "move the host work out of solve, or onto the GPU"
        else:
            summary = (f"host-bound: solve spends {us_text(host_us)} on the host against the "
                       f"GPU's {us_text(busy_us)}")
            advice = "allocate once, outside the call, and never wait for the GPU inside it"
        if n_sync or to_host:
            advice = "stop waiting for the GPU inside solve; " + advice
        findings.insert(0, {"kind": "host-bound", "text": f"{summary}: {advice}"})
        return {"bottleneck": bottleneck, "summary": summary, "findings": findings}

    # the GPU is busy most of the call: which kernel, and what limits it
    kernel_us = sum(k["dur_us"] for k in kernels) or busy_us
    top = max(kernels, key=lambda k: k["dur_us"]) if kernels else None
    share = top["dur_us"] / kernel_us if top and kernel_us > 0 else 0.0
    floor_share = (float(floor_us) / busy_us) if floor_us and busy_us > 0 else None
    at = f" at {100 * floor_share:.0f}% of the floor" if floor_share is not None else ""
    counter = _match_counters(top, counters) if top else None
    blocks = _blocks(top) if top else 0
    few_blocks = bool(sm_count and 0 < blocks < sm_count)
    dram = counter.get("dram_pct_of_peak") if counter else None
    compute = counter.get("compute_pct_of_peak") if counter else None
    occupancy = counter.get("achieved_occupancy_pct") if counter else None

    if top and launches >= 3 and share < 0.6:
        findings.append({"kind": "many-kernels", "text": (
            f"{launches} kernels share the GPU time (the biggest, {short_name(top['name'])}, "
            f"takes {100 * share:.0f}%): each writes its result to memory for the next to read "
            f"back; fusing them saves those passes")})
    if floor_share is not None and floor_share >= 0.8:
        bottleneck = "at-floor"
        summary = (f"memory-bound{at}: the call moves its bytes nearly as fast as this GPU can; "
                   f"little is left to gain")
    elif compute is not None and compute >= 60 and (dram is None or dram < 40):
        bottleneck = "gpu-compute"
        summary = (f"compute-bound{at}: {short_name(top['name'])} keeps the SMs {compute:.0f}% busy "
                   f"while DRAM runs at {dram or 0:.0f}% of its peak")
    elif few_blocks or (occupancy is not None and occupancy < 25) or (
            dram is not None and dram < 60):
        bottleneck = "gpu-latency"
        why = []
        if few_blocks:
            why.append(f"a grid of {blocks} block{'s' if blocks > 1 else ''} on {sm_count} SMs "
                       f"leaves {sm_count - blocks} idle")
        if occupancy is not None and occupancy < 25:
            limiter = counter.get("occupancy_limiter")
            why.append(f"achieved occupancy {occupancy:.0f}%"
                       + (f" (per SM, {limiter.replace('_', ' ')} set its ceiling)"
                          if limiter else ""))
        if dram is not None:
            why.append(f"DRAM at {dram:.0f}% of its peak")
        summary = (f"memory-bound{at}: too few bytes in flight"
                   + (f", {'; '.join(why)}" if why else ""))
    else:
        bottleneck = "gpu-memory"
        summary = (f"memory-bound{at}"
                   + (f": DRAM at {dram:.0f}% of its peak" if dram is not None else ""))
    if floor_share is None and bottleneck not in ("gpu-compute",):
        summary += " (no measured floor to compare with)"
    if few_blocks and bottleneck != "gpu-latency":
        findings.append({"kind": "too-few-blocks", "text": (
            f"{short_name(top['name'])} launches {blocks} blocks on {sm_count} SMs: "
            f"{sm_count - blocks} SMs idle")})
    if counter and counter.get("top_stalls"):
        s = counter["top_stalls"][0]
        findings.append({"kind": "stalls", "text": (
            f"{short_name(top['name'])}'s warps mostly stall {s['words']} "
            f"({100 * s['share']:.0f}% of stalls)")})
    if counter and counter.get("l2_hit_rate_pct") is not None and context.get("bytes"):
        moved = (counter.get("dram_read_bytes") or 0) + (counter.get("dram_write_bytes") or 0)
        if moved > 1.5 * float(context["bytes"]):
            findings.append({"kind": "extra-traffic", "text": (
                f"{short_name(top['name'])} moves {moved / float(context['bytes']):.1f}x the bytes "
                f"the case needs ({moved:,.0f} of {int(context['bytes']):,}; L2 hit rate "
                f"{counter['l2_hit_rate_pct']:.0f}%)")})
    if host_us > busy_us:
        findings.append({"kind": "host-time", "text": (
            f"solve spends {us_text(host_us)} on the host, longer than the GPU's "
            f"{us_text(busy_us)} (its first kernel starts {us_text(lead_us)} into the call): "
            f"the grader's timing hides it behind a launch cover, as CUDA graphs do in a "
            f"serving loop; a loop that calls solve directly pays it")})
    findings.insert(0, {"kind": bottleneck, "text": summary})
    return {"bottleneck": bottleneck, "summary": summary, "findings": findings}


def _match_counters(kernel: Dict[str, Any], counters: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """ncu's row for a timeline kernel: by name (ncu's is the function's base name), else the
    longest-running profiled kernel."""
    if not counters:
        return None
    base = short_name(kernel.get("name", ""), 10_000)
    for c in sorted(counters, key=lambda c: -(c.get("duration_us") or 0)):
        cname = c.get("name", "")
        if cname and (cname in base or short_name(cname, 10_000) in base or base in cname):
            return c
    return max(counters, key=lambda c: c.get("duration_us") or 0)


