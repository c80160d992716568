"""``--action profile`` on the CPU: the trace's summary, the ``profile`` message's strict schema,
ncu's CSV read as hostile text, the diagnosis on synthetic timelines, and the command's clear
degradation without a GPU. (The GPU run is benchmarks/profile_gpu.sh.)"""

import copy
import re
import json
import math

import pytest

from helpers import REFERENCE_96, grade_json
from runner import protocol
from runner.grader.profile.ncu import admin_only_counters, explain_ncu_failure, ncu_plan, parse_ncu_csv
from runner.grader.profile.diagnosis import diagnose
from runner.grader.profile.report import NO_GPU, build_profile
from runner.profile_text import render_profile
from runner.profile_schema import MAX_KERNELS, valid_profile
from runner.profiling import summarize_trace

SMS = 132


def kernel(name="attn(float const*)", start=0.0, dur=30.0, grid=(32, 1, 1), block=(128, 1, 1)):
    return {"name": name, "start_us": start, "dur_us": dur, "grid": list(grid),
            "block": list(block), "registers": 40, "shared_bytes": 0, "stream": 7}


def timeline(kernels, call_us=None, host_us=10.0, api=None, copies=()):
    busy = sum(k["dur_us"] for k in kernels)
    end = max([k["start_us"] + k["dur_us"] for k in kernels] or [host_us])
    return {"call_us": call_us if call_us is not None else end, "host_us": host_us,
            "gpu_busy_us": busy, "kernels_total": len(kernels), "kernels": list(kernels),
            "copies_total": len(copies), "copies": list(copies), "api": api or {}}


CONTEXT = {"device": "NVIDIA H100 80GB HBM3", "sm_count": SMS, "floor_us": 20.0,
           "ceiling_gbps": 3000.0, "bytes": 69_730_304, "params": {"num_heads": 32}}


# -- the trace the child summarizes --------------------------------------------------------------

def chrome_trace():
    ev = [{"ph": "X", "cat": "user_annotation", "name": "warmup", "ts": 100.0, "dur": 50.0},
          {"ph": "X", "cat": "kernel", "name": "warm_kernel", "ts": 120.0, "dur": 40.0,
           "args": {"grid": [1, 1, 1], "block": [32, 1, 1]}},
          {"ph": "X", "cat": "user_annotation", "name": "solve", "ts": 1000.0, "dur": 60.0},
          {"ph": "X", "cat": "cuda_runtime", "name": "cudaMalloc", "ts": 1001.0, "dur": 20.0},
          {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 1030.0, "dur": 5.0},
          {"ph": "X", "cat": "kernel", "name": "void attn<128>(float const*, signed char const*)",
           "ts": 1040.0, "dur": 45.0,
           "args": {"grid": [32, 1, 1], "block": [128, 1, 1], "registers per thread": 64,
                    "shared memory": 1024, "stream": 7}},
          {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pageable)",
           "ts": 1090.0, "dur": 3.0, "args": {"bytes": 4}},
          {"ph": "X", "cat": "cuda_runtime", "name": "cudaDeviceSynchronize", "ts": 1200.0,
           "dur": 1.0},     # the harness's own, after the range
          {"ph": "i", "cat": "kernel", "name": "instant", "ts": 1050.0}]
    return ev


def test_the_trace_summary_keeps_only_the_profiled_call():
    tl = summarize_trace(chrome_trace())
    assert tl["kernels_total"] == 1 and tl["kernels"][0]["grid"] == [32, 1, 1]
    k = tl["kernels"][0]
    assert k["start_us"] == 40.0 and k["dur_us"] == 45.0 and k["registers"] == 64
    assert tl["call_us"] == pytest.approx(93.0) and tl["host_us"] == 60.0
    assert tl["gpu_busy_us"] == pytest.approx(48.0)
    assert set(tl["api"]) == {"cudaMalloc", "cudaLaunchKernel"}     # the sync came after
    assert tl["copies"][0]["bytes"] == 4
    assert valid_profile({"timeline": tl, "timeline_s": 1.5})


def test_a_trace_without_the_range_is_an_error():
    with pytest.raises(ValueError):
        summarize_trace([{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}])


# -- the message's schema --------------------------------------------------------------------------

def good_payload():
    return {"timeline": timeline([kernel()]), "timeline_s": 2.0,
            "ncu": {"status": "failed", "csv": "", "exit_code": 1, "message": "==ERROR== x",
                    "seconds": 3.0}}


def parse(payload):
    return protocol.parse({"kind": protocol.PROFILE, "payload": payload})


def test_a_well_formed_profile_message_parses():
    kind, payload, tensors = parse(good_payload())
    assert kind == protocol.PROFILE and tensors is None


@pytest.mark.parametrize("mutate", [
    lambda p: p.update(extra=1),
    lambda p: p["timeline"].update(secret="x"),
    lambda p: p["timeline"]["kernels"][0].update(path="/etc/passwd"),
    lambda p: p["timeline"].update(call_us=math.nan),
    lambda p: p["timeline"].update(call_us=math.inf),
    lambda p: p["timeline"].update(call_us=-1.0),
    lambda p: p["timeline"].update(call_us=True),
    lambda p: p["timeline"]["kernels"][0].update(name="k" * 201),
    lambda p: p["timeline"]["kernels"][0].update(grid=[1, 2]),
    lambda p: p["timeline"]["kernels"][0].update(grid=[1, 2, -3]),
    lambda p: p["timeline"].update(kernels=[kernel()] * (MAX_KERNELS + 1),
                                   kernels_total=MAX_KERNELS + 1),
    lambda p: p["timeline"].update(kernels_total=0),         # lists more than it counts
    lambda p: p["timeline"].update(api={f"cuda{i}": {"count": 1, "total_us": 1.0} for i in range(49)}),
    lambda p: p["ncu"].update(csv="x" * 300_001),
    lambda p: p["ncu"].update(status="great"),
    lambda p: p["ncu"].update(run="rm -rf /"),
    lambda p: p.pop("timeline"),
    lambda p: p.update(timeline_error=["not", "a", "string"]),
])
def test_a_malformed_profile_message_is_a_violation(mutate):
    payload = copy.deepcopy(good_payload())
    mutate(payload)
    with pytest.raises(protocol.ProtocolViolation):
        parse(payload)


def test_a_profile_comes_only_when_asked():
    t = protocol.Transcript(0, submit=True)
    for kind in (protocol.SANDBOX, protocol.READY):
        t.admit(kind, {})
    with pytest.raises(protocol.ProtocolViolation):
        t.admit(protocol.PROFILE, good_payload())
    t.expect(protocol.PROFILE)
    t.admit(protocol.PROFILE, good_payload())
    with pytest.raises(protocol.ProtocolViolation):
        t.admit(protocol.PROFILE, good_payload())        # one only


# -- ncu's CSV: hostile text -----------------------------------------------------------------------

HEADER = ['ID', 'Process ID', 'Process Name', 'Host Name', 'Kernel Name', 'Context', 'Stream',
          'Block Size', 'Grid Size', 'Device', 'CC', 'gpu__time_duration.sum',
          'dram__throughput.avg.pct_of_peak_sustained_elapsed',
          'sm__throughput.avg.pct_of_peak_sustained_elapsed',
          'sm__warps_active.avg.pct_of_peak_sustained_active',
          'launch__occupancy_limit_blocks', 'launch__occupancy_limit_registers',
          'launch__occupancy_limit_shared_mem', 'launch__occupancy_limit_warps',
          'lts__t_sector_hit_rate.pct', 'dram__bytes_read.sum', 'dram__bytes_write.sum',
          'smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio',
          'smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio',
          'smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio',
          'smsp__average_warps_issue_stalled_wait_per_issue_active.ratio']
UNITS = ['', '', '', '', '', '', '', '', '', '', '', 'nsecond', '%', '%', '%', 'block', 'block',
         'block', 'block', '%', 'byte', 'byte', 'ratio', 'ratio', 'ratio', 'ratio']


def ncu_csv(rows):
    def line(fields):
        return ",".join('"' + str(f).replace('"', '""') + '"' for f in fields)
    return "\n".join(["==PROF== Connected to process 12", line(HEADER), line(UNITS)]
                     + [line(r) for r in rows] + ["==PROF== Disconnected"])


ROW = ['0', '12', 'python3', '127.0.0.1', 'attn', '1', '7', '(128, 1, 1)', '(32, 1, 1)', '0',
       '9.0', '49,216', '38.2', '12.5', '6.1', '32', '4', '16', '16', '3.5', '69730304', '131072',
       '21.0', '2.0', '5.0', '1.0']


def test_ncu_csv_is_read_into_counters():
    counters = parse_ncu_csv(ncu_csv([ROW]))
    assert len(counters) == 1
    c = counters[0]
    assert c["name"] == "attn" and c["grid"] == [32, 1, 1] and c["block"] == [128, 1, 1]
    assert c["duration_us"] == pytest.approx(49.216)
    assert c["dram_pct_of_peak"] == 38.2 and c["achieved_occupancy_pct"] == 6.1
    assert c["occupancy_limiter"] == "registers" and c["l2_hit_rate_pct"] == 3.5
    assert [s["reason"] for s in c["top_stalls"]] == ["long_scoreboard", "barrier", "wait"]


@pytest.mark.parametrize("text", [
    "", "garbage", '"a","b"\n"c"', "\x00" * 1000, '"' * 100_000,
    ncu_csv([ROW[:5]]),                                         # a short row: skipped
    ncu_csv([[f"=cmd|' /C calc'!A0" for _ in HEADER]]),          # formula-like text: just text
    ncu_csv([ROW[:11] + ["1e400"] + ROW[12:]]),                  # an infinity: dropped
    ncu_csv([ROW[:4] + ["x" * 100_000] + ROW[5:]]),              # a huge field
    ncu_csv([ROW] * 10_000),                                     # many rows: bounded
])
def test_hostile_ncu_text_never_breaks_the_parser(text):
    counters = parse_ncu_csv(text)
    assert len(counters) <= 64
    for c in counters:
        json.dumps(c, allow_nan=False)
        assert len(c["name"]) <= 200


def test_why_counters_are_missing_is_said():
    perm = {"status": "failed", "csv": "", "seconds": 2.0, "message":
            "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA "
            "GPU Performance Counters on the target device 0."}
    assert "not permitted" in explain_ncu_failure(perm)
    assert "time limit" in explain_ncu_failure({"status": "timeout", "message": "", "csv": ""})


def test_ncu_is_not_run_where_the_driver_forbids_counters(tmp_path, monkeypatch):
    params = tmp_path / "params"
    params.write_text("ResmanDebugLevel: 4294967295\nRmProfilingAdminOnly: 1\n")
    assert admin_only_counters(str(params)) is True
    params.write_text("RmProfilingAdminOnly: 0\n")
    assert admin_only_counters(str(params)) is False
    assert admin_only_counters(str(tmp_path / "missing")) is None
    monkeypatch.setenv("GRADER_PROFILE_NCU", "off")
    assert ncu_plan(True)[0] is None and "off" in ncu_plan(True)[1]
    monkeypatch.setenv("GRADER_PROFILE_NCU", "")
    monkeypatch.setattr("runner.grader.profile.ncu.find_ncu", lambda: None)
    ncu, reason = ncu_plan(True)
    assert ncu is None and "no Nsight Compute" in reason


# -- the diagnosis ---------------------------------------------------------------------------------

def test_160_tiny_kernels_are_host_bound():
    kernels = [kernel(name="elementwise_kernel", start=50.0 * i, dur=4.0, grid=(64, 1, 1))
               for i in range(160)]
    d = diagnose(timeline(kernels, call_us=8000.0, host_us=7900.0), [], CONTEXT)
    assert d["bottleneck"] == "host"
    assert "host-bound: 160 launches per call" in d["summary"]
    assert "fuse" in d["findings"][0]["text"]


def test_one_block_per_head_is_too_few_blocks_at_41_percent_of_the_floor():
    k = kernel(name="attn_one_block_per_head(float const*)", start=5.0, dur=20.0 / 0.41,
               grid=(32, 1, 1))
    d = diagnose(timeline([k], host_us=8.0), [], CONTEXT)
    assert d["bottleneck"] == "gpu-latency"
    assert d["summary"].startswith("memory-bound at 41% of the floor: too few bytes in flight")
    assert "32 blocks on 132 SMs leaves 100 idle" in d["summary"]


def test_counters_name_the_limiter_and_the_stalls():
    k = kernel(name="attn(float const*)", start=5.0, dur=49.0, grid=(32, 1, 1))
    counters = parse_ncu_csv(ncu_csv([ROW]))
    d = diagnose(timeline([k], host_us=8.0), counters, CONTEXT)
    assert "achieved occupancy 6% (per SM, registers set its ceiling)" in d["summary"]
    assert "DRAM at 38% of its peak" in d["summary"]
    assert any(f["kind"] == "stalls" and "global memory" in f["text"] for f in d["findings"])


def test_allocation_inside_solve_is_named():
    api = {"cudaMalloc": {"count": 3, "total_us": 2100.0}, "cudaLaunchKernel": {"count": 1, "total_us": 5.0}}
    d = diagnose(timeline([kernel(start=2200.0, dur=30.0, grid=(512, 1, 1))], host_us=2210.0,
                          api=api), [], CONTEXT)
    assert any(f["kind"] == "allocation" and "allocates device memory in every call: 3 cudaMalloc"
               in f["text"] for f in d["findings"])
    assert d["bottleneck"] == "host"


def test_a_synchronize_and_a_two_pass_loop_are_host_bound():
    kernels = [kernel(name=f"pass{i % 2}", start=200.0 * i, dur=30.0, grid=(1024, 1, 1))
               for i in range(64)]
    api = {"cudaDeviceSynchronize": {"count": 32, "total_us": 3000.0}}
    copies = [{"kind": "Memcpy DtoH (Device -> Pageable)", "start_us": 100.0, "dur_us": 2.0,
               "bytes": 4}]
    d = diagnose(timeline(kernels, call_us=15500.0, host_us=15400.0, api=api, copies=copies),
                 [], CONTEXT)
    assert d["bottleneck"] == "host"
    kinds = [f["kind"] for f in d["findings"]]
    assert kinds[0] == "host-bound" and "synchronization" in kinds and "copy-to-host" in kinds
    assert d["findings"][0]["text"].count("stop waiting for the GPU") == 1


def test_a_kernel_at_the_floor_has_little_left():
    k = kernel(start=3.0, dur=22.0, grid=(1056, 1, 1))
    d = diagnose(timeline([k], host_us=5.0), [], CONTEXT)
    assert d["bottleneck"] == "at-floor" and "91% of the floor" in d["summary"]


def test_many_kernels_of_a_pytorch_solution_pass_data_through_memory():
    kernels = [kernel(name=f"k{i}", start=40.0 * i, dur=38.0, grid=(2048, 1, 1)) for i in range(9)]
    d = diagnose(timeline(kernels, host_us=90.0), [], CONTEXT)
    assert d["bottleneck"] in ("gpu-memory", "gpu-latency")
    assert "6% of the floor" in d["summary"]
    assert any(f["kind"] == "many-kernels" and "9 kernels" in f["text"] for f in d["findings"])


def test_no_kernels_means_the_work_is_on_the_host():
    d = diagnose(timeline([], call_us=500.0, host_us=500.0), [], CONTEXT)
    assert d["bottleneck"] == "host" and "no kernel" in d["summary"]


# -- the report --------------------------------------------------------------------------------------

def test_the_report_shows_the_timeline_the_reason_and_the_diagnosis():
    payload = good_payload()
    payload["ncu"]["message"] = "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission"
    profile = build_profile(payload, CONTEXT)
    assert profile["available"] and profile["schema"] == 1
    assert profile["timeline"]["launches"] == 1 and "not permitted" in profile["counters_reason"]
    assert profile["diagnosis"]["bottleneck"] in ("gpu-latency", "at-floor", "gpu-memory")
    json.dumps(profile, allow_nan=False)
    text = render_profile(profile)
    assert "diagnosis:" in text and "counters: GPU performance counters are not permitted" in text
    missing = build_profile(None, {**CONTEXT, "reason": NO_GPU})
    assert not missing["available"] and render_profile(missing).endswith(NO_GPU)


def test_without_a_gpu_the_command_says_there_is_nothing_to_profile(capsys):
    code, result, err = grade_json(capsys, "96", "--solution",
                                   REFERENCE_96 / "solution.pytorch.py", "--action", "profile",
                                   "--device", "cpu", "--no-sandbox")
    assert code == 0 and result["verdict"] == "accepted", result["message"]
    assert result["action"] == "profile"
    assert result["profile"]["available"] is False and result["profile"]["reason"] == NO_GPU
    assert "nothing to profile" in err
    assert len(result["tests"]) == 14     # every test and the performance case still ran


FAKE_NCU = """#!/bin/sh
# a stand-in for Nsight Compute: writes a CSV (hostile bits included) where --log-file says
while [ $# -gt 0 ]; do
  if [ "$1" = "--log-file" ]; then LOG="$2"; fi
  shift
done
cat > "$LOG" <<'CSV'
==PROF== Connected to process 12 (/usr/bin/python3)
@CSV@
==WARNING== something odd; "quotes" and =formulas
CSV
exit 0
"""


def test_the_jailed_child_sends_its_profile_through_the_pipe(tmp_path, monkeypatch):
    """The whole path on the CPU (the test hook ``time_on_cpu``): the grader finds an ncu (a
    fake here), shows its folder in the jail and names it in its command; the child profiles
    one call (a CPU timeline, no kernels), runs the ncu and sends one strict message back."""
    import torch

    from runner.catalog import find_challenge
    from runner.grader.grade import grade_safely
    from runner.grader.options import GradeOptions
    from runner.sandbox import jail

    usable, why = jail.probe()
    if not usable:
        pytest.skip(f"no jail here: {why}")
    folder = tmp_path / "nsight-compute-fake"
    folder.mkdir()
    (folder / "sections").mkdir()
    ncu = folder / "ncu"
    ncu.write_text(FAKE_NCU.replace("@CSV@", ncu_csv([ROW]).split("\n", 1)[1]
                                    .replace("==PROF== Disconnected", "")))
    ncu.chmod(0o755)
    monkeypatch.setattr("runner.grader.profile.ncu.find_ncu", lambda: ncu)
    monkeypatch.setattr("runner.grader.profile.ncu.admin_only_counters", lambda *a: None)
    monkeypatch.delenv("GRADER_PROFILE_NCU", raising=False)
    options = GradeOptions(action="submit", profile=True, device=torch.device("cpu"),
                           time_on_cpu=True)
    result = grade_safely(find_challenge("96"), REFERENCE_96 / "solution.pytorch.py",
                          "pytorch", options)
    assert result.verdict == "accepted", (result.message, result.details)
    profile = result.profile
    assert profile["available"], profile
    assert profile["timeline"]["launches"] == 0 and profile["timeline"]["host_us"] > 0
    assert profile["diagnosis"]["bottleneck"] == "host"
    assert profile["counters"][0]["name"] == "attn"          # the fake's CSV, parsed here
    assert profile["counters"][0]["occupancy_limiter"] == "registers"
    assert result.to_dict()["profile"]["schema"] == 1


# -- the documented JSON --------------------------------------------------------------------------

def _doc_rows():
    from helpers import REPO

    text = (REPO / "docs" / "profile.md").read_text()
    section = text.split("## The JSON", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, meaning = line.split("|")[1], "|".join(line.split("|")[2:])
        for field in re.findall(r"`([^`]+)`", first):
            rows[field] = set(re.findall(r"`([^`]+)`", meaning))
    return rows


def _paths(value, prefix=""):
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}{k}"
            out.add(path)
            if k not in ("api", "occupancy_limits", "params"):
                out |= _paths(v, path + ".")
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        out.add(prefix[:-1] + "[]")
        for item in value:
            out |= _paths(item, prefix[:-1] + "[].")
    return out


def test_every_field_of_a_profile_is_documented_and_the_other_way_round():
    full = good_payload()
    full["ncu"].update(status="failed", csv=ncu_csv([ROW + []]))
    full["timeline"].update(copies_total=1, api={"cudaMalloc": {"count": 1, "total_us": 3.0}},
                            copies=[{"kind": "Memcpy DtoH", "start_us": 1.0, "dur_us": 1.0,
                                     "bytes": 4}])
    no_counters = good_payload()
    header = HEADER + ["sm__maximum_warps_per_active_cycle_pct", "launch__waves_per_multiprocessor",
                       "launch__registers_per_thread",
                       "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"]
    more = ncu_csv([ROW + ["50", "0.24", "64", "40"]]).replace(
        ",".join(f'"{h}"' for h in HEADER), ",".join(f'"{h}"' for h in header)).replace(
        ",".join(f'"{u}"' for u in UNITS), ",".join(f'"{u}"' for u in UNITS + ["%", "", "", "%"]))
    full_ncu = good_payload()
    full_ncu["ncu"].update(status="ok", csv=more)
    profiles = [build_profile(p, CONTEXT) for p in (full, no_counters, full_ncu)]
    profiles.append(build_profile(None, {**CONTEXT, "reason": NO_GPU}))
    assert profiles[2]["counters"][0]["theoretical_occupancy_pct"] == 50
    rows = _doc_rows()
    seen = {p.replace("[]", "") for p in set().union(*(_paths(p) for p in profiles))}
    fields = {f.replace("[]", ""): {t.replace("[]", "") for t in m} for f, m in rows.items()}

    def documented(path):
        leaf = path.rpartition(".")[2]
        return any(f == path or f.startswith(path + ".") for f in fields) or any(
            path.startswith(f + ".") and leaf in tokens for f, tokens in fields.items())

    undocumented = sorted(p for p in seen if not documented(p))
    assert not undocumented, f"fields of a profile missing from docs/profile.md: {undocumented}"
    never_seen = sorted(f for f in fields if f not in seen)
    assert not never_seen, f"documented but never in a profile: {never_seen}"


OLD_NCU = """#!/bin/sh
# an older ncu: refuses --print-units at once; without it, writes its CSV to stdout
for a in "$@"; do
  if [ "$a" = "--print-units" ]; then echo "==ERROR== unrecognised option '--print-units'"; exit 1; fi
done
cat <<'CSV'
@CSV@
CSV
"""


def test_an_older_ncu_is_run_again_without_what_it_refuses(tmp_path):
    from runner.profiling import run_ncu

    ncu = tmp_path / "ncu"
    ncu.write_text(OLD_NCU.replace("@CSV@", ncu_csv([ROW])))
    ncu.chmod(0o755)
    result = run_ncu(str(ncu), {"challenge_path": "x"}, timeout_s=30, launch_count=10)
    assert result["status"] == "ok" and result["csv"].startswith('"ID"')
    assert parse_ncu_csv(result["csv"])[0]["name"] == "attn"
    assert valid_profile({"timeline_error": "none", "ncu": result})
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    result = run_ncu(str(slow), {}, timeout_s=6, launch_count=10)
    assert result["status"] == "timeout" and result["seconds"] < 20
    assert "time limit" in explain_ncu_failure(result)


# -- on a GPU (skipped without one; benchmarks/profile_gpu.sh runs the whole set) ---------------

@pytest.mark.gpu
@pytest.mark.parametrize("fixture, words", [
    ("many_launches.pytorch.py", "host-bound: "),
    ("sync_two_pass.pytorch.py", "host-bound"),
])
def test_a_host_bound_solution_is_named_on_the_gpu(capsys, monkeypatch, fixture, words):
    import torch

    from helpers import REPO

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.setenv("GRADER_PROFILE_NCU", "off")       # the timeline alone: quicker
    code, result, _ = grade_json(capsys, "96", "--solution",
                                 REPO / "benchmarks" / "profile" / fixture, "--action", "profile")
    assert code == 0, result["message"]
    profile = result["profile"]
    assert profile["available"], profile
    assert profile["diagnosis"]["bottleneck"] == "host"
    assert words in profile["diagnosis"]["summary"]
    assert "GRADER_PROFILE_NCU=off" in profile["counters_reason"]
    if fixture.startswith("many"):     # 5 per head and 3 more, or more where a library splits
        assert profile["timeline"]["launches"] >= 163
        assert re.search(r"host-bound: \d+ launches per call", profile["diagnosis"]["summary"])
    if fixture.startswith("sync"):
        kinds = [f["kind"] for f in profile["diagnosis"]["findings"]]
        assert "synchronization" in kinds and "copy-to-host" in kinds


def test_ncu_looks_at_the_longest_kernel():
    from runner.profiling import launch_window

    short = [kernel(dur=1.0) for _ in range(163)]
    assert launch_window({"kernels": short[:5]}, 10) == 0
    long_at = [kernel(dur=100.0 if i == 120 else 1.0) for i in range(163)]
    skip = launch_window({"kernels": long_at}, 10)
    assert skip <= 120 < skip + 10
    last = [kernel(dur=100.0 if i == 162 else 1.0) for i in range(163)]
    assert launch_window({"kernels": last}, 10) == 153
    assert launch_window(None, 10) == 0


def test_any_well_formed_timeline_gets_a_report():
    """Random timelines the schema admits (empty lists, zeros, huge values, trimmed lists)
    always give a strict-JSON profile and its text."""
    import random

    rng = random.Random(29)
    for _ in range(300):
        n = rng.choice([0, 1, 2, 5, 50])
        kernels = [kernel(name=rng.choice(["k", "", "void a<1>(int)", "x" * 200]),
                          start=rng.uniform(0, 1e4), dur=rng.choice([0.0, 1.0, 1e6]),
                          grid=(rng.randint(0, 200), rng.randint(0, 3), 1))
                   for _ in range(n)]
        tl = timeline(kernels, call_us=rng.choice([0.0, 1.0, 1e4]), host_us=rng.uniform(0, 1e4),
                      api=rng.choice([{}, {"cudaMalloc": {"count": 0, "total_us": 0.0}},
                                      {"cudaStreamSynchronize": {"count": 3, "total_us": 9.0}}]))
        tl["kernels_total"] += rng.choice([0, 400])
        if rng.random() < 0.2:
            tl["kernels"] = []
        payload = {"timeline": tl}
        if rng.random() < 0.5:
            payload["ncu"] = {"status": "ok", "csv": ncu_csv([ROW]) if rng.random() < 0.5 else "",
                              "exit_code": 0, "message": "", "seconds": 1.0}
        assert valid_profile(payload)
        context = rng.choice([CONTEXT, {}, {**CONTEXT, "floor_us": None, "sm_count": 0}])
        profile = build_profile(payload, context)
        json.dumps(profile, allow_nan=False)
        assert render_profile(profile)


def test_the_process_ncu_profiles_loads_the_solution(tmp_path):
    """runner/profile_target.py as ncu starts it, on the CPU (no profiler range there): it
    loads the challenge and the solution from the job and calls solve; an error is kept in
    target.err for the child to quote."""
    import subprocess
    import sys

    from helpers import REPO
    from runner.protocol import Job

    job = Job(challenge_path=str(REPO / "challenges" / "medium" / "96_int8_kv_cache_attention"),
              solution_path=str(REFERENCE_96 / "solution.pytorch.py"), language="pytorch",
              device="cpu", action="submit", seed=0, perf_copies=1, nvcc_flags=[],
              gpu_memory_fraction=None)
    spec = tmp_path / "target.json"
    spec.write_text(json.dumps(job.to_dict()))
    run = subprocess.run([sys.executable, "-m", "runner.profile_target", str(spec)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (tmp_path / "target.err").read_text()
    assert run.stdout == "" and run.stderr == ""
    spec.write_text(json.dumps({**job.to_dict(), "solution_path": str(tmp_path / "missing.py")}))
    run = subprocess.run([sys.executable, "-m", "runner.profile_target", str(spec)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "missing.py" in (tmp_path / "target.err").read_text()


def test_the_conversation_in_process_asks_for_one_profile_after_the_fresh_check(monkeypatch):
    """--no-sandbox (the grader and the child's side in one process), the CPU test hook: the
    order is perf_first, fresh, then profile, then done; and a wrong solution is not profiled."""
    import torch

    from runner.catalog import find_challenge
    from runner.grader.grade import grade_safely
    from runner.grader.options import GradeOptions
    from runner.grader.profile.grading import ProfileGrading

    seen = []
    original = ProfileGrading.on_message

    def spy(self, message, received_at):
        seen.append(message.kind)
        return original(self, message, received_at)

    monkeypatch.setattr(ProfileGrading, "on_message", spy)
    monkeypatch.setenv("GRADER_PROFILE_NCU", "off")
    options = GradeOptions(action="submit", profile=True, device=torch.device("cpu"),
                           time_on_cpu=True, isolate=False)
    result = grade_safely(find_challenge("96"), REFERENCE_96 / "solution.pytorch.py", "pytorch",
                          options)
    assert result.verdict == "accepted" and result.action == "profile"
    assert seen[-4:] == [protocol.PERF_FIRST, protocol.PERF_FRESH, protocol.PROFILE, protocol.DONE]
    assert result.profile["available"] and "GRADER_PROFILE_NCU=off" in result.profile["counters_reason"]
    assert result.performance["timed"] is False

    from helpers import WRONG_96

    seen.clear()
    result = grade_safely(find_challenge("96"), WRONG_96 / "no_max.pytorch.py", "pytorch",
                          options)
    assert result.verdict == "wrong_answer" and protocol.PROFILE not in seen
    assert not result.profile["available"] and "did not pass" in result.profile["reason"]


def test_one_kernel_behind_slow_python_is_judged_on_the_gpu_with_a_host_note():
    """Triton's or CuPy's launch: 40 us of Python before one 30 us kernel. The launch cover
    hides that time, so the bottleneck is the kernel's; the host time is a finding."""
    k = kernel(start=40.0, dur=30.0, grid=(1056, 1, 1))
    d = diagnose(timeline([k], host_us=45.0), [], CONTEXT)
    assert d["bottleneck"] != "host"
    assert any(f["kind"] == "host-time" and "launch cover" in f["text"] for f in d["findings"])
