"""``--action profile``, the submission side: one call of ``solve`` under torch's profiler
(CUPTI), and Nsight Compute's counters where the grader says it may run.

This runs in the jail, with the submission's code, so everything here is a *claim*: it is sent
as one bounded ``profile`` message (:data:`runner.protocol.PROFILE`, checked by
:func:`runner.profile_schema.valid_profile`), and the grader uses it only to tell the user why
their kernel is slow (:mod:`runner.grader.profile.report`), never for a verdict or a rank.

The timeline: one warm-up call, the L2 flushed as before a timed run, then one call inside a
``solve`` range; every GPU activity that starts after the range began is the call's (the device
was drained before it). Nsight Compute (``ncu``), when the grader found one it may use, runs a
separate process of ours (:mod:`runner.profile_target`) in the same jail that loads the solution
and calls it once between ``cudaProfilerStart``/``Stop``; its CSV goes back as text, bounded,
and is parsed only by the grader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

MAX_KERNELS = 400          # kernels listed one by one (the rest only counted)
MAX_COPIES = 64
MAX_API = 48
MAX_NAME = 200
MAX_CSV_CHARS = 200_000    # ncu's CSV as sent (the schema allows 300,000: JSON escaping
#                            adds a byte per quote, and the line must stay under 1 MiB)
MAX_LOG_CHARS = 4_000
MAX_MESSAGE_BYTES = 900_000

# runtime and driver calls worth reporting: allocation, waiting, copies, launches
API_OF_INTEREST = ("Malloc", "Free", "MemAlloc", "MemFree", "Synchronize", "Memcpy", "Memset",
                   "LaunchKernel", "cuLaunch", "HostAlloc", "MallocHost", "EventSynchronize")

NCU_SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "WarpStateStats",
                "MemoryWorkloadAnalysis")
STALLS = ("long_scoreboard", "short_scoreboard", "barrier", "membar", "lg_throttle",
          "mio_throttle", "math_pipe_throttle", "wait", "not_selected", "no_instruction")
NCU_METRICS = ",".join(["dram__bytes_read.sum", "dram__bytes_write.sum",
                        "lts__t_sector_hit_rate.pct"]
                       + [f"smsp__average_warps_issue_stalled_{s}_per_issue_active.ratio"
                          for s in STALLS])


def _num(value: Any, default: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if out == out and abs(out) < 1e15 else default


def _dim3(value: Any) -> List[int]:
    if isinstance(value, str):        # "[32, 1, 1]" in some versions' traces
        value = re.findall(r"\d+", value[:64])
    if isinstance(value, (list, tuple)) and len(value) == 3:
        try:
            return [max(0, min(int(v), 2**31)) for v in value]
        except (TypeError, ValueError):
            pass
    return [0, 0, 0]


def summarize_trace(events: List[Dict[str, Any]], annotation: str = "solve") -> Dict[str, Any]:
    """The timeline of the call inside the ``annotation`` range of a Chrome trace's events
    (what ``torch.profiler``'s ``export_chrome_trace`` writes): kernels, copies, memsets and
    the runtime/driver calls of interest, times in us relative to the range's start. A pure
    function (tested on synthetic traces)."""
    ranges = [e for e in events if e.get("name") == annotation
              and e.get("cat") in ("user_annotation", "cpu_op") and e.get("ph") == "X"]
    if not ranges:
        raise ValueError(f"no {annotation!r} range in the trace")
    solve = max(ranges, key=lambda e: _num(e.get("ts")))
    t0, host_us = _num(solve.get("ts")), _num(solve.get("dur"))
    kernels, copies, api = [], [], {}
    end = t0 + host_us
    for e in events:
        if e.get("ph") != "X":
            continue
        cat, ts, dur = str(e.get("cat", "")), _num(e.get("ts")), max(0.0, _num(e.get("dur")))
        if cat == "kernel" and ts >= t0:
            args = e.get("args") or {}
            kernels.append({"name": str(e.get("name", ""))[:MAX_NAME], "start_us": ts - t0,
                            "dur_us": dur, "grid": _dim3(args.get("grid")),
                            "block": _dim3(args.get("block")),
                            "registers": int(_num(args.get("registers per thread"))),
                            "shared_bytes": int(_num(args.get("shared memory"))),
                            "stream": int(_num(args.get("stream")))})
            end = max(end, ts + dur)
        elif cat in ("gpu_memcpy", "gpu_memset") and ts >= t0:
            args = e.get("args") or {}
            copies.append({"kind": str(e.get("name", cat))[:64], "start_us": ts - t0,
                           "dur_us": dur, "bytes": int(_num(args.get("bytes")))})
            end = max(end, ts + dur)
        elif cat in ("cuda_runtime", "cuda_driver") and t0 <= ts <= t0 + host_us:
            name = str(e.get("name", ""))[:64]
            if any(k in name for k in API_OF_INTEREST):
                entry = api.setdefault(name, {"count": 0, "total_us": 0.0})
                entry["count"] += 1
                entry["total_us"] += dur
    kernels.sort(key=lambda k: k["start_us"])
    copies.sort(key=lambda c: c["start_us"])
    busy = _union([(k["start_us"], k["start_us"] + k["dur_us"]) for k in kernels]
                  + [(c["start_us"], c["start_us"] + c["dur_us"]) for c in copies])
    api = dict(sorted(api.items(), key=lambda kv: -kv[1]["total_us"])[:MAX_API])
    return {"call_us": end - t0, "host_us": host_us, "gpu_busy_us": busy,
            "kernels_total": len(kernels), "kernels": kernels[:MAX_KERNELS],
            "copies_total": len(copies), "copies": copies[:MAX_COPIES], "api": api}


def _union(intervals: List[tuple]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for start, stop in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, stop
        else:
            cur_end = max(cur_end, stop)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def cupti_timeline(solve_call, args: Dict[str, Any], device) -> Dict[str, Any]:
    """One call of ``solve`` under torch's profiler (CUPTI: no special rights needed)."""
    import torch   # lazy: torch's profiler loads for --action profile only
    from torch.profiler import ProfilerActivity, profile, record_function

    from runner.timing import L2Flusher

    cuda = device.type == "cuda"       # the CPU only in tests: a timeline without kernels
    flush = L2Flusher(device) if cuda else (lambda: None)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        with record_function("warmup"):
            solve_call(args)
        sync()
        flush()
        sync()
        with record_function("solve"):
            solve_call(args)
        sync()
    with tempfile.TemporaryDirectory() as folder:    # the child's own scratch tmpfs
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    if cuda and not any(e.get("cat") == "kernel" for e in events):
        # the L2 flush's kernel ran inside the profiler: without it, CUPTI saw nothing
        raise RuntimeError("CUPTI recorded no GPU activity at all (not even the harness's own "
                           "kernel): the GPU timeline is not available in this process")
    return summarize_trace(events)


def ncu_command(ncu: str, log: Path, spec: Path, launch_count: int, full: bool = True,
                launch_skip: int = 0) -> List[str]:
    """ncu's command line: CSV of the raw page to ``log``, only the kernels between the
    target's profiler start and stop (``launch_count`` of them after ``launch_skip``);
    ``full=False`` leaves out what an older ncu may not know (base units, extra metrics)."""
    command = [ncu, "--csv", "--page", "raw", "--log-file", str(log),
               "--profile-from-start", "off", "--launch-skip", str(int(launch_skip)),
               "--launch-count", str(int(launch_count)), "--target-processes", "all"]
    if full:
        command += ["--print-units", "base", "--metrics", NCU_METRICS]
    for section in NCU_SECTIONS:
        command += ["--section", section]
    return command + [sys.executable, "-s", "-m", "runner.profile_target", str(spec)]


def launch_window(timeline: Optional[Dict[str, Any]], launch_count: int) -> int:
    """How many launches ncu skips so that its window holds the call's longest kernel (the
    timeline lists them in launch order)."""
    kernels = (timeline or {}).get("kernels") or []
    if len(kernels) <= launch_count:
        return 0
    longest = max(range(len(kernels)), key=lambda i: kernels[i]["dur_us"])
    return max(0, min(longest - launch_count // 2, len(kernels) - launch_count))


def run_ncu(ncu: str, job_dict: Dict[str, Any], timeout_s: float, launch_count: int,
            launch_skip: int = 0) -> Dict[str, Any]:
    """Nsight Compute on a process of ours that calls the solution once (its CSV, bounded).
    Where ncu refuses an option or a metric at once, it is run again without them."""
    folder = Path(tempfile.mkdtemp(prefix="ncu-"))
    spec = folder / "target.json"
    spec.write_text(json.dumps(job_dict))
    started = time.monotonic()
    result: Dict[str, Any] = {"status": "timeout", "csv": "", "exit_code": 0,
                              "message": "no time left to run ncu", "seconds": 0.0}
    for full in (True, False):
        log = folder / f"ncu-{int(full)}.log"
        left = timeout_s - (time.monotonic() - started)
        if left < 5:
            break
        result = _run_ncu_once(ncu_command(ncu, log, spec, launch_count, full, launch_skip),
                               log, folder, left)
        refused = re.search(r"unrecogni[sz]ed option|unknown option|failed to find metric|"
                            r"invalid metric|option .* is not supported", result["message"], re.I)
        if result["csv"] or result["status"] != "failed" or not refused:
            break
    result["seconds"] = time.monotonic() - started
    if not result["csv"]:       # why the target failed, where it says (its own stderr)
        try:
            with open(folder / "target.err", "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 1500))
                tail = f.read(1500).decode(errors="replace").strip()
        except OSError:
            tail = ""
        if tail:
            result["message"] = (result["message"] + "\n[target] " + tail)[-MAX_LOG_CHARS:]
    return result


def _run_ncu_once(command: List[str], log: Path, folder: Path, timeout_s: float) -> Dict[str, Any]:
    status = "ok"
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, cwd=folder)
    except OSError as exc:
        return {"status": "failed", "message": f"ncu could not start: {exc}"[:MAX_LOG_CHARS],
                "csv": "", "exit_code": 0, "seconds": 0.0}
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
        status = "timeout"
    text = ""
    try:
        with open(log, "r", errors="replace") as f:
            text = f.read(8 * MAX_CSV_CHARS)
    except OSError:
        pass
    printed = (out or b"")[:8 * MAX_CSV_CHARS].decode(errors="replace")
    csv_lines = [line for line in text.splitlines() if line.startswith('"')]
    if not csv_lines:     # an ncu that prints its results to stdout despite --log-file
        csv_lines = [line for line in printed.splitlines() if line.startswith('"')]
    messages = [line for line in (text + "\n" + printed).splitlines() if line.startswith("==")]
    messages += [line for line in (err or b"")[-65536:].decode(errors="replace").splitlines()
                 if line.strip()][-10:]
    if status == "ok" and proc.returncode != 0:
        status = "failed"
    return {"status": status, "csv": "\n".join(csv_lines)[:MAX_CSV_CHARS],
            "exit_code": max(-255, min(255, int(proc.returncode or 0))),
            "message": "\n".join(messages)[-MAX_LOG_CHARS:], "seconds": 0.0}


def profile_solution(solve_call, args: Dict[str, Any], device, job_dict: Dict[str, Any],
                     command: Dict[str, Any]) -> Dict[str, Any]:
    """The payload of the ``profile`` message: the timeline and, where asked, ncu's CSV."""
    payload: Dict[str, Any] = {}
    started = time.monotonic()
    try:
        payload["timeline"] = cupti_timeline(solve_call, args, device)
    except Exception as exc:  # noqa: BLE001 - the user is told why there is no timeline
        payload["timeline_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    payload["timeline_s"] = time.monotonic() - started
    ncu = command.get("ncu")
    if isinstance(ncu, str) and ncu:
        count = int(command.get("launch_count", 10))
        payload["ncu"] = run_ncu(ncu, job_dict, float(command.get("ncu_timeout_s", 25.0)),
                                 count, launch_window(payload.get("timeline"), count))
    # one line on the report pipe, well under its 1 MiB: fewer kernels listed if need be
    timeline = payload.get("timeline")
    while timeline and timeline["kernels"] and len(json.dumps(payload)) > MAX_MESSAGE_BYTES:
        timeline["kernels"] = timeline["kernels"][:len(timeline["kernels"]) // 2]
    return payload
