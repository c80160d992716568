"""Nsight Compute for ``--action profile``, on the grader's side: where ``ncu`` may run (its
install, the driver's permission for counters) and its CSV read as hostile text.

ncu's output is produced by a tool running the submission's process: it is parsed here as
bounded text only (a CSV reader with small field and row limits, numbers through ``float``),
never executed or loaded, and what comes of it is information for the user, never part of a
verdict. The child's side (running ncu in the jail) is :mod:`runner.profiling`.
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

from runner import environment

MAX_ROWS = 64
MAX_COLUMNS = 4000
MAX_FIELD = 8192
NCU_TIMEOUT_S = 25.0
NCU_LAUNCH_COUNT = 10
PARAMS_FILE = "/proc/driver/nvidia/params"


# -- where ncu may run (host side, trusted) ------------------------------------------------------

def find_ncu() -> Optional[Path]:
    """The host's ``ncu``, where there is one: PATH, $CUDA_HOME/bin, the usual install folders."""
    candidates = [shutil.which("ncu")]
    for home in environment.cuda_homes():
        candidates.append(os.path.join(home, "bin", "ncu"))
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
    mode = environment.ncu_mode()
    if mode == "off":
        return None, "Nsight Compute not run: GRADER_PROFILE_NCU=off"
    ncu = find_ncu()
    if ncu is None:
        return None, ("no Nsight Compute (ncu) on this machine: counters are not available "
                      "(install Nsight Compute, or put ncu on PATH)")
    admin = not jailed and os.geteuid() == 0     # the jail's user never is
    if admin_only_counters() and mode != "always" and not admin:
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



def first_error(ncu: Dict[str, Any]) -> str:
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
    first = first_error(ncu)
    return "Nsight Compute failed in the jail" + (f": {first}" if first else "")


