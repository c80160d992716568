"""The measured floor of a case (runner.devices.case_floor) and how submit reports against it.
The probes themselves run on the GPU (tests/test_trust.py checks the read kernel under the
interpreter); here they are stand-ins, so what is checked is the rule: the faster probe, one
measurement per device and size, a fallback to the ceiling's rate."""

from __future__ import annotations

import json

import pytest
import torch

from runner import devices
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.grader.performance import throughput
from runner.report import render_performance

GPU = torch.device("cuda")          # only a name here: nothing touches a GPU


@pytest.fixture
def probes(monkeypatch, tmp_path):
    """Stand-in probes that count their calls; a cache folder of this test's own."""
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(devices, "_KEPT", {})
    monkeypatch.setattr(devices, "describe", lambda device: "NVIDIA H200")
    calls = []

    def set_rates(read_ms, mixed_ms):
        def read(device, nbytes):
            calls.append(("read", nbytes))
            return read_ms(nbytes) if callable(read_ms) else read_ms

        def mixed(device, nbytes, written):
            calls.append(("mixed", nbytes, written))
            return mixed_ms(nbytes, written) if callable(mixed_ms) else mixed_ms
        monkeypatch.setattr(devices, "read_floor_ms", read)
        monkeypatch.setattr(devices, "mixed_floor_ms", mixed)
    set_rates.calls = calls
    return set_rates


def test_the_floor_is_the_faster_probe_over_exactly_the_case_bytes(probes):
    probes(read_ms=0.0195, mixed_ms=0.031)
    floor = devices.case_floor(GPU, 66 * 2**20, written=2**20)
    assert floor.ms == 0.0195 and floor.source.startswith("read probe over these 66.0 MiB")
    assert probes.calls == [("read", 66 * 2**20), ("mixed", 66 * 2**20, 2**20)]

    probes(read_ms=0.050, mixed_ms=0.041)         # writes that end in L2 are cheaper
    floor = devices.case_floor(GPU, 10 * 2**20, written=4 * 2**20)
    assert floor.ms == 0.041
    assert floor.source.startswith("read-write probe (4.0 MiB of them written) over these 10.0")


def test_the_second_probe_writes_the_cases_share_half_where_unknown_none_where_none(probes):
    probes(read_ms=0.050, mixed_ms=0.041)
    devices.case_floor(GPU, 8 * 2**20)
    devices.case_floor(GPU, 16 * 2**20, written=0)
    devices.case_floor(GPU, 32 * 2**20, written=64 * 2**20)     # clipped to the bytes moved
    assert probes.calls == [("read", 8 * 2**20), ("mixed", 8 * 2**20, 4 * 2**20),
                            ("read", 16 * 2**20),
                            ("read", 32 * 2**20), ("mixed", 32 * 2**20, 32 * 2**20)]


def test_each_challenges_write_share_is_what_its_kernels_must_write():
    """96 and 98 write only their output (a few KiB of a 66 or 472 MiB case): their floor is
    a read; 97 writes the int8 rows and scales of the tokens it stores, a third of its bytes
    (its pool is inout, so the signature alone would say half)."""
    cpu = torch.device("cpu")
    for number in ("96", "98"):
        challenge = load_challenge(find_challenge(number), cpu)
        case = challenge.generate_performance_test()
        assert challenge.bytes_written(case) == case["output"].numel() * 4
    challenge = load_challenge(find_challenge("97"), cpu)
    case = challenge.generate_performance_test()
    share = challenge.bytes_written(case) / challenge.bytes_moved(case)
    assert 0.3 < share < 0.4


def test_the_floor_is_measured_once_per_device_and_size_and_kept_on_disk(probes, tmp_path,
                                                                         monkeypatch):
    probes(read_ms=lambda n: n / 3.5e9 * 1e3 + 0.002, mixed_ms=1.0)
    first = devices.case_floor(GPU, 2**26)
    assert devices.case_floor(GPU, 2**26) == first and len(probes.calls) == 2
    [kept] = (tmp_path / "floors").glob("*.json")
    assert json.loads(kept.read_text())["bytes"] == 2**26

    monkeypatch.setattr(devices, "_KEPT", {})    # a new process finds the file
    probes(read_ms=99.0, mixed_ms=99.0)
    assert devices.case_floor(GPU, 2**26) == first
    assert devices.case_floor(GPU, 2**27).ms == 99.0     # another size is measured anew
    assert devices.case_floor(torch.device("cpu"), 2**26) is None


def test_no_room_for_the_probe_leaves_the_ceilings_rate(probes, monkeypatch):
    def out_of_memory(nbytes):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    probes(read_ms=out_of_memory, mixed_ms=1.0)
    assert devices.case_floor(GPU, 2**26) is None
    assert devices._KEPT == {}                    # not remembered: the next grading tries again

    monkeypatch.setattr(devices, "ceiling", lambda device: devices.Ceiling(4000.0, "test probe"))
    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    case = challenge.generate_performance_test()
    nbytes = challenge.bytes_moved(case)
    out = throughput(challenge, case, 2 * nbytes / 4000e9 * 1e3, GPU)
    assert out["floor_source"] == "these bytes at the measured ceiling's rate"
    assert out["floor_fraction"] == pytest.approx(0.5)
    assert out["ceiling_fraction"] == pytest.approx(0.5)


def test_submit_reports_its_share_of_the_case_floor_beside_peak_and_ceiling(probes, monkeypatch):
    probes(read_ms=0.0195, mixed_ms=0.031)
    monkeypatch.setattr(devices, "ceiling",
                        lambda device: devices.Ceiling(3600.0, "Triton read probe, 512 MiB"))
    challenge = load_challenge(find_challenge("96"), torch.device("cpu"))
    case = challenge.generate_performance_test()
    out = throughput(challenge, case, 0.026, GPU)
    assert out["floor_us"] == pytest.approx(19.5)
    assert out["floor_fraction"] == pytest.approx(0.0195 / 0.026)
    assert out["peak_source"].startswith("H200 peak")
    text = render_performance({"timed": True, "params": {}, **out, "solution": {
        "median_ms": 0.026, "mean_ms": 0.026, "min_ms": 0.025, "std_ms": 0.0001, "runs": 100,
        "mode": "events"}})
    assert "75% of the measured floor (19.5 us: read probe over these" in text
    assert "measured ceiling: 3,600 GB/s (Triton read probe, 512 MiB)" in text


def test_the_ceiling_is_measured_once_per_device_and_kept_beside_the_floors(probes, tmp_path,
                                                                            monkeypatch):
    measured = []
    monkeypatch.setattr(devices, "measure_ceiling",
                        lambda device: measured.append(1) or (4390.0, "Triton read probe"))
    first = devices.ceiling(GPU)
    assert first == devices.Ceiling(4390.0, "Triton read probe") and devices.ceiling(GPU) == first
    [kept] = (tmp_path / "ceilings").glob("*.json")
    assert json.loads(kept.read_text())["device"] == "NVIDIA H200" and len(measured) == 1
    monkeypatch.setattr(devices, "_KEPT", {})       # a new process finds the file
    assert devices.ceiling(GPU) == first and len(measured) == 1
    kept.write_text("{not json")                     # a damaged file is measured again
    monkeypatch.setattr(devices, "_KEPT", {})
    assert devices.ceiling(GPU) == first and len(measured) == 2
