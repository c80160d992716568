"""``--action profile``, the grader's side: where Nsight Compute may run, its CSV read as
hostile text, the diagnosis in words, and the report (text and JSON).

Everything here reads what the jailed child sent in its ``profile`` message (already checked
against :mod:`runner.profile_schema`): claims, shown to the user as information and never used
for a verdict or a rank. ncu's CSV was produced by a tool running the submission's process, so
it is parsed as bounded text only (a CSV reader with small field and row limits, numbers
through ``float``), never executed or loaded. The diagnosis (:func:`diagnose`) is a pure
function of the figures, tested on the CPU with synthetic timelines.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

SCHEMA_VERSION = 1
MAX_ROWS = 64
MAX_COLUMNS = 4000
MAX_FIELD = 8192
TOP_KERNELS = 4               # kernels whose counters are shown
NCU_TIMEOUT_S = 25.0
NCU_LAUNCH_COUNT = 10
PARAMS_FILE = "/proc/driver/nvidia/params"
NCU_ENV = "GRADER_PROFILE_NCU"     # "off": never run ncu; "always": run it even where the
#                                    driver restricts counters to administrators (to see how
#                                    it fails in the jail)

NO_GPU = ("no GPU: nothing to profile (the timeline and counters come from a CUDA GPU; "
          "the tests above ran on the CPU)")


# -- where ncu may run (host side, trusted) ------------------------------------------------------

def find_ncu() -> Optional[Path]:
    """The host's ``ncu``, where there is one: PATH, $CUDA_HOME/bin, the usual install folders."""
    candidates = [shutil.which("ncu")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "ncu"))
    candidates += ["/usr/local/cuda/bin/ncu"]
    candidates += sorted(glob.glob("/usr/local/cuda*/bin/ncu"), reverse=True)
    candidates += sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"), reverse=True)
    candidates += sorted(glob.glob("/usr/local/cuda*/nsight-compute*/ncu"), reverse=True)
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return Path(c)
    return None


def ncu_install_dir(ncu: Path) -> Path:
    """The folder the jail must show for ``ncu`` to run (its whole Nsight Compute install:
    the front end, its target folder with the injection libraries, its sections)."""
    real = ncu.resolve()
    folder = real.parent
    if folder.name == "bin" and not (folder / "sections").exists():
        # a toolkit's bin/ncu wrapper: the install is a sibling nsight-compute-* folder
        siblings = sorted(folder.parent.glob("nsight-compute*"))
        if siblings:
            return siblings[-1].resolve()
    return folder


def admin_only_counters(params_file: str = PARAMS_FILE) -> Optional[bool]:
    """Whether the driver restricts performance counters to administrators
    (``RmProfilingAdminOnly``), None where the driver does not say."""
    try:
        with open(params_file, "r", errors="replace") as f:
            text = f.read(65536)
    except OSError:
        return None
    m = re.search(r"RmProfilingAdminOnly:\s*(\d+)", text)
    return None if m is None else m.group(1) != "0"


def ncu_plan(jailed: bool) -> Tuple[Optional[Path], str]:
    """(ncu to run, or None; why not). Decided here, told to the child in its command."""
    mode = os.environ.get(NCU_ENV, "").strip().lower()
    if mode == "off":
        return None, f"Nsight Compute not run: {NCU_ENV}=off"
    ncu = find_ncu()
    if ncu is None:
        return None, ("no Nsight Compute (ncu) on this machine: counters are not available "
                      "(install Nsight Compute, or put ncu on PATH)")
    if admin_only_counters() and mode != "always":
        who = "the jail's user" if jailed else "this user"
        return None, (f"GPU performance counters are not permitted for {who}: the driver "
                      f"restricts them to administrators (RmProfilingAdminOnly: 1; the "
                      f"machine's owner can load the nvidia module with "
                      f"NVreg_RestrictProfilingToAdminUsers=0)")
    return ncu, ""


# -- ncu's CSV, as hostile text ----------------------------------------------------------------

_UNIT_SCALE = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3,
               "ms": 1e3, "second": 1e6, "s": 1e6,
               "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
               "kibyte": 1024.0, "mibyte": 2.0**20, "gibyte": 2.0**30}

STALL_RE = re.compile(r"^smsp__average_warps?_(?:issue_stalled|latency_issue_stalled)_"
                      r"([a-z_]+?)_per_(?:issue_active|warp_active)\.ratio$")

STALL_WORDS = {
    "long_scoreboard": "waiting for global memory (long scoreboard)",
    "short_scoreboard": "waiting for shared memory or special math (short scoreboard)",
    "barrier": "waiting at a barrier (__syncthreads)",
    "membar": "waiting at a memory barrier",
    "lg_throttle": "the global load/store queue is full (lg throttle)",
    "mio_throttle": "the memory I/O queue is full (mio throttle)",
    "math_pipe_throttle": "a math pipe is busy (math pipe throttle)",
    "wait": "fixed-latency dependencies (wait)",
    "not_selected": "ready but not selected (enough warps)",
    "selected": "issuing (selected)",
    "no_instruction": "no instruction fetched (no instruction)",
    "dispatch_stall": "dispatch stall",
    "drain": "draining memory stores at exit (drain)",
    "imc_miss": "constant cache miss (imc miss)",
    "branch_resolving": "resolving a branch",
    "tex_throttle": "the texture queue is full (tex throttle)",
    "sleeping": "sleeping",
    "misc": "miscellaneous",
}


def _float(text: str, unit: str = "") -> Optional[float]:
    text = text.strip().replace(",", "")
    if not text or len(text) > 40:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value * _UNIT_SCALE.get(unit.strip().lower(), 1.0)


def _dims(text: str) -> Optional[List[int]]:
    nums = re.findall(r"\d+", text[:64])
    if not nums or len(nums) > 3:
        return None
    out = [min(int(n), 2**31) for n in nums] + [1] * (3 - len(nums))
    return out


def parse_ncu_csv(text: str) -> List[Dict[str, Any]]:
    """ncu's ``--csv --page raw`` output as one dict per profiled kernel with the counters we
    show; anything that does not look like it is skipped. Bounded: at most ``MAX_ROWS``
    kernels, ``MAX_COLUMNS`` columns, fields of ``MAX_FIELD`` characters."""
    lines = [line for line in text[:400_000].splitlines() if line.startswith('"')]
    if len(lines) < 2:
        return []
    old = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD)
    try:
        rows = []
        for row in csv.reader(io.StringIO("\n".join(lines[:MAX_ROWS + 2]))):
            rows.append(row[:MAX_COLUMNS])
    except csv.Error:
        return []
    finally:
        csv.field_size_limit(old)
    header = rows[0]
    if "Kernel Name" not in header:
        return []
    col = {name: i for i, name in enumerate(header)}
    # the second row holds the units where its ID column is empty
    units = rows[1] if len(rows) > 1 and rows[1] and rows[1][0] == "" else None
    data = rows[2:] if units is not None else rows[1:]
    units = units or [""] * len(header)

    def get(row, name) -> Optional[float]:
        i = col.get(name)
        if i is None or i >= len(row):
            return None
        return _float(row[i], units[i] if i < len(units) else "")

    def text_of(row, name) -> str:
        i = col.get(name)
        return row[i][:200] if i is not None and i < len(row) else ""

    kernels = []
    for row in data[:MAX_ROWS]:
        if len(row) != len(header):
            continue
        k: Dict[str, Any] = {"name": text_of(row, "Kernel Name")}
        duration = get(row, "gpu__time_duration.sum")
        if duration is not None:
            k["duration_us"] = duration if units[col["gpu__time_duration.sum"]] else duration / 1e3
        grid, block = _dims(text_of(row, "Grid Size")), _dims(text_of(row, "Block Size"))
        if grid:
            k["grid"] = grid
        if block:
            k["block"] = block
        for key, names in (
                ("dram_pct_of_peak", ("dram__throughput.avg.pct_of_peak_sustained_elapsed",
                                      "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed")),
                ("memory_pct_of_peak", ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",)),
                ("compute_pct_of_peak", ("sm__throughput.avg.pct_of_peak_sustained_elapsed",)),
                ("achieved_occupancy_pct", ("sm__warps_active.avg.pct_of_peak_sustained_active",)),
                ("theoretical_occupancy_pct", ("sm__maximum_warps_per_active_cycle_pct",)),
                ("l2_hit_rate_pct", ("lts__t_sector_hit_rate.pct",)),
                ("waves_per_sm", ("launch__waves_per_multiprocessor",)),
                ("registers_per_thread", ("launch__registers_per_thread",)),
                ("dram_read_bytes", ("dram__bytes_read.sum",)),
                ("dram_write_bytes", ("dram__bytes_write.sum",))):
            for name in names:
                value = get(row, name)
                if value is not None:
                    k[key] = value
                    break
        limits = {}
        for what in ("blocks", "registers", "shared_mem", "warps", "barriers"):
            value = get(row, f"launch__occupancy_limit_{what}")
            if value is not None:
                limits[what] = value
        if limits:
            k["occupancy_limits"] = limits
            lowest = min(limits.values())
            k["occupancy_limiter"] = sorted(w for w, v in limits.items() if v == lowest)[0]
        stalls = []
        for name, i in col.items():
            m = STALL_RE.match(name)
            if m and m.group(1) not in ("not_selected", "selected"):
                value = get(row, name)
                if value is not None and value > 0:
                    stalls.append((value, m.group(1)))
        stalls.sort(reverse=True)
        total = sum(v for v, _ in stalls) or 1.0
        k["top_stalls"] = [{"reason": r, "words": STALL_WORDS.get(r, r.replace("_", " ")),
                            "cycles_per_issue": round(v, 3), "share": round(v / total, 3)}
                           for v, r in stalls[:3]]
        kernels.append(k)
    return kernels


# -- the diagnosis: pure functions of the figures --------------------------------------------

def _fmt_us(us: float) -> str:
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.1f} us"


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
            f"({_fmt_us(alloc_us)}) inside solve; allocate once and reuse the buffer "
            f"(or let torch's caching allocator hand it out)")})
    elif n_async_alloc:
        findings.append({"kind": "allocation", "text": (
            f"allocates from a stream-ordered pool in every call ({n_async_alloc} "
            f"cudaMallocAsync); cheaper than cudaMalloc, but a buffer made once costs nothing")})
    n_sync, sync_us, sync_names = _api_calls(api, "Synchronize")
    if n_sync:
        findings.append({"kind": "synchronization", "text": (
            f"waits for the GPU inside solve: {n_sync} {sync_names[0]} ({_fmt_us(sync_us)}); "
            f"the host launches nothing while it waits; the grader synchronizes after the call, "
            f"so solve need not")})
    to_host = [c for c in copies if "DtoH" in c["kind"] or "Device -> Pageable" in c["kind"]
               or "Device -> Pinned" in c["kind"]]
    if to_host:
        findings.append({"kind": "copy-to-host", "text": (
            f"copies to the host inside solve ({len(to_host)} copies, "
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
        summary = (f"no kernel ran on the GPU during the call ({_fmt_us(call_us)} on the host): "
                   f"is the work done on the CPU?")
        findings.insert(0, {"kind": "no-kernels", "text": summary})
        return {"bottleneck": bottleneck, "summary": summary, "findings": findings}

    idle_us = max(0.0, call_us - busy_us)
    if busy_share < 0.5:
        bottleneck = "host"
        per_launch = idle_us / launches
        if launches >= 8:
            summary = (f"host-bound: {launches} launches per call; the GPU is busy "
                       f"{100 * busy_share:.0f}% of the call's {_fmt_us(call_us)} and idles "
                       f"{_fmt_us(per_launch)} per launch between kernels")
            advice = ("fuse the kernels into fewer launches (or capture them in a CUDA graph); "
                      "loops over heads or tokens belong inside a kernel")
        else:
            summary = (f"host-bound: the GPU is busy {100 * busy_share:.0f}% of the call's "
                       f"{_fmt_us(call_us)}; {_fmt_us(idle_us)} go to host work around "
                       f"{launches} launch{'es' if launches > 1 else ''}")
            advice = "move the host work out of solve, or onto the GPU"
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

    if launches >= 3 and share < 0.6:
        findings.append({"kind": "many-kernels", "text": (
            f"{launches} kernels share the GPU time (the biggest, {_short(top['name'])}, "
            f"takes {100 * share:.0f}%): each writes its result to memory for the next to read "
            f"back; fusing them saves those passes")})
    if floor_share is not None and floor_share >= 0.8:
        bottleneck = "at-floor"
        summary = (f"memory-bound{at}: the call moves its bytes nearly as fast as this GPU can; "
                   f"little is left to gain")
    elif compute is not None and compute >= 60 and (dram is None or dram < 40):
        bottleneck = "gpu-compute"
        summary = (f"compute-bound{at}: {_short(top['name'])} keeps the SMs {compute:.0f}% busy "
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
                       + (f" (limited by {limiter.replace('_', ' ')})" if limiter else ""))
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
            f"{_short(top['name'])} launches {blocks} blocks on {sm_count} SMs: "
            f"{sm_count - blocks} SMs idle")})
    if counter and counter.get("top_stalls"):
        s = counter["top_stalls"][0]
        findings.append({"kind": "stalls", "text": (
            f"its warps mostly stall {s['words']} ({100 * s['share']:.0f}% of stalls)")})
    if counter and counter.get("l2_hit_rate_pct") is not None and context.get("bytes"):
        moved = (counter.get("dram_read_bytes") or 0) + (counter.get("dram_write_bytes") or 0)
        if moved > 1.5 * float(context["bytes"]):
            findings.append({"kind": "extra-traffic", "text": (
                f"{_short(top['name'])} moves {moved / float(context['bytes']):.1f}x the bytes "
                f"the case needs ({moved:,.0f} of {int(context['bytes']):,}; L2 hit rate "
                f"{counter['l2_hit_rate_pct']:.0f}%)")})
    if host_us > busy_us and bottleneck != "host":
        findings.append({"kind": "host-time", "text": (
            f"solve spends {_fmt_us(host_us)} on the host, longer than the GPU's "
            f"{_fmt_us(busy_us)}: timed behind a launch cover it is hidden, in a real loop it "
            f"may not be")})
    findings.insert(0, {"kind": bottleneck, "text": summary})
    return {"bottleneck": bottleneck, "summary": summary, "findings": findings}


def _short(name: str, limit: int = 60) -> str:
    base = name.split("(")[0].strip() or name
    base = re.sub(r"^void\s+", "", base)
    return base if len(base) <= limit else base[:limit - 3] + "..."


def _match_counters(kernel: Dict[str, Any], counters: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """ncu's row for a timeline kernel: by name (ncu's is the function's base name), else the
    longest-running profiled kernel."""
    if not counters:
        return None
    base = _short(kernel.get("name", ""), 10_000)
    for c in sorted(counters, key=lambda c: -(c.get("duration_us") or 0)):
        cname = c.get("name", "")
        if cname and (cname in base or _short(cname, 10_000) in base or base in cname):
            return c
    return max(counters, key=lambda c: c.get("duration_us") or 0)


# -- the report ----------------------------------------------------------------------------------

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
            out["counters"] = counters[:TOP_KERNELS]
            out["counters_profiled"] = len(counters)
            if ncu.get("status") != "ok":
                out["counters_note"] = f"ncu ended {ncu.get('status')}: " + _first_error(ncu)
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


def _first_error(ncu: Dict[str, Any]) -> str:
    for line in str(ncu.get("message", "")).splitlines():
        if "ERR" in line or "rror" in line:
            return line.strip()[:300]
    return str(ncu.get("message", "")).strip()[:300]


def explain_ncu_failure(ncu: Dict[str, Any]) -> str:
    """Why ncu gave no counters, in words, from its (hostile, bounded) messages."""
    message = str(ncu.get("message", ""))
    if "ERR_NVGPUCTRPERM" in message or "permission to access NVIDIA GPU Performance" in message:
        return ("GPU performance counters are not permitted for the jail's user (ncu: "
                "ERR_NVGPUCTRPERM); the timeline above needs no special rights")
    if ncu.get("status") == "timeout":
        return "Nsight Compute ran past its time limit; no counters"
    if "No kernels were profiled" in message:
        return "Nsight Compute profiled no kernel of the call"
    first = _first_error(ncu)
    return "Nsight Compute failed in the jail" + (f": {first}" if first else "")


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
        grid = "x".join(str(d) for d in k["grid"]).replace("x1x1", "").replace("x1", "", 1) \
            if k["grid"][1:] == [1, 1] else "x".join(str(d) for d in k["grid"])
        block = str(k["block"][0]) if k["block"][1:] == [1, 1] else "x".join(map(str, k["block"]))
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
            parts.append(f"DRAM {c['dram_pct_of_peak']:.0f}% of peak;")
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
