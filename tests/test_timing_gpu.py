"""The timer on a GPU: host launch time is hidden behind the launch cover, but host work a call
waits for (a synchronize) is billed; work left on another stream is billed too."""

import time

import pytest
import torch

from runner.timing import time_cuda

pytestmark = pytest.mark.gpu


def spin_cycles(us: float) -> int:
    return int(us * 1.98e3)   # about 2 cycles per ns on current datacenter GPUs; only a scale


def test_slow_host_launch_is_not_billed():
    def call(i):
        time.sleep(300e-6)                  # 300 us of host work before the launch
        torch.cuda._sleep(spin_cycles(10))  # ~10 us of GPU work
    timing = time_cuda(call, budget_s=0.5)
    assert timing.launch_cover and timing.host_us >= 250
    assert timing.median_ms * 1e3 < 150, timing


def test_host_work_after_a_synchronize_is_billed():
    def call(i):
        torch.cuda._sleep(spin_cycles(10))
        torch.cuda.synchronize()            # waits for the GPU: the cover must turn off
        time.sleep(300e-6)
        torch.cuda._sleep(spin_cycles(10))
    timing = time_cuda(call, budget_s=0.5)
    assert not timing.launch_cover
    assert timing.median_ms * 1e3 >= 280, timing


def test_work_on_another_stream_is_billed():
    side = torch.cuda.Stream()

    def call(i):
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.cuda._sleep(spin_cycles(2000))   # ~2 ms, never joined
    timing = time_cuda(call, budget_s=0.5)
    assert timing.mode == "device-sync"
    assert timing.median_ms * 1e3 >= 1000, timing


def test_work_that_never_waits_for_the_current_stream_is_billed_when_isolated():
    """A call on a non-blocking stream of its own (PyTorch's streams are) that neither waits
    for the current stream nor is joined: timed isolated, the device drained before the start
    event and before the end event, so its work is billed although the events' stream never
    sees it."""
    side = torch.cuda.Stream()

    def call(i):
        with torch.cuda.stream(side):
            torch.cuda._sleep(spin_cycles(500))   # ~0.5 ms, never waits, never joined
    timing = time_cuda(call, budget_s=0.5, isolate=True)
    assert timing.mode == "isolated" and not timing.launch_cover
    assert timing.median_ms * 1e3 >= 400, timing


def test_the_case_floor_is_below_the_ceilings_rate_and_grows_with_the_bytes(tmp_path,
                                                                            monkeypatch):
    """The measured floor of a case (what submit's "% of the measured floor" divides): a
    launch over a case's bytes cannot beat the device's ceiling rate (with noise), pays a ramp
    the ceiling's large buffer hides, and takes longer for more bytes."""
    from runner import devices

    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(devices, "_KEPT", {})
    device = torch.device("cuda")
    ceiling = devices.ceiling(device)
    small, large = devices.case_floor(device, 64 * 2**20), devices.case_floor(device, 512 * 2**20)
    for floor, nbytes in ((small, 64 * 2**20), (large, 512 * 2**20)):
        at_ceiling_ms = nbytes / (ceiling.gbps * 1e9) * 1e3
        assert 0.9 * at_ceiling_ms <= floor.ms <= 5 * at_ceiling_ms, (floor, ceiling)
    assert large.ms > 4 * small.ms
