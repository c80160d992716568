"""The judge page's profile (runner/judge/server/static/profile.js) in a real browser: a result of
`--action profile` renders its diagnosis, the timeline chart (one bar per kernel and copy, the
host's time in solve) and the kernels' table; hostile text from the result stays text.

Needs /usr/bin/chromium and the `playwright` package; skips with the reason otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.grader.profile.report import build_profile

STATIC = Path(__file__).resolve().parents[2] / "runner" / "judge" / "server" / "static"
CHROMIUM = os.environ.get("JUDGE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def profile():
    kernels = [{"name": "<img src=x onerror=alert(1)>(int)" if i == 0 else f"head_kernel_{i}(float*)",
                "start_us": 50.0 * i, "dur_us": 4.0, "grid": [64, 1, 1], "block": [128, 1, 1],
                "registers": 32, "shared_bytes": 0, "stream": 7} for i in range(160)]
    timeline = {"call_us": 8000.0, "host_us": 7900.0, "gpu_busy_us": 640.0,
                "kernels_total": 160, "kernels": kernels, "copies_total": 1,
                "copies": [{"kind": "Memcpy DtoH (Device -> Pageable)", "start_us": 7990.0,
                            "dur_us": 2.0, "bytes": 4}],
                "api": {"cudaLaunchKernel": {"count": 160, "total_us": 900.0}}}
    return build_profile({"timeline": timeline, "timeline_s": 1.0},
                         {"device": "H100", "sm_count": 132, "floor_us": 20.0, "bytes": 69_730_304},
                         "no Nsight Compute (ncu) on this machine")


def test_the_profile_renders_as_a_chart(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no `playwright` package")
    data = profile()
    data["counters"] = [{"name": "head_kernel_1", "duration_us": 5.0, "dram_pct_of_peak": 12.0,
                         "dram_of_ceiling": 0.1, "achieved_occupancy_pct": 40.0,
                         "occupancy_limiter": "warps", "l2_hit_rate_pct": 3.0,
                         "top_stalls": [{"reason": "long_scoreboard", "share": 0.8}]}]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.set_content("<!doctype html><html><body><main id='main'></main></body></html>")
            page.add_style_tag(content=(STATIC / "style.css").read_text())
            page.add_script_tag(content=(STATIC / "profile.js").read_text())
            page.evaluate("(p) => document.getElementById('main').append(renderProfile(p))",
                          json.loads(json.dumps(data)))
            assert "host-bound: 160 launches per call" in page.inner_text("#profile-diagnosis")
            assert page.locator("#profile-chart rect.tl-kernel").count() == 160
            assert page.locator("#profile-chart rect.tl-copy").count() == 1
            assert page.locator("#profile-chart rect.tl-host").count() == 1
            assert page.locator("#profile-kernels tbody tr").count() == 20
            assert page.locator("img").count() == 0            # the kernel's name stayed text
            assert "no Nsight Compute" in page.inner_text("#profile-counters-reason")
            row = page.inner_text("#profile-counters tbody tr")
            assert "10%" in row and "long_scoreboard 80%" in row and "warps" in row
            page.screenshot(path=str(Path(os.environ.get("JUDGE_SCREENSHOT_DIR", tmp_path))
                                     / "profile.png"), full_page=True)
            page.evaluate("() => document.getElementById('main').replaceChildren("
                          "renderProfile({available: false, reason: 'no GPU: nothing to profile'}))")
            assert page.inner_text("#profile-reason") == "no GPU: nothing to profile"
        finally:
            browser.close()


def test_the_judge_takes_a_profile_and_never_ranks_it():
    from types import SimpleNamespace

    from judge_helpers import message
    from runner.judge.server.leaderboard import Leaderboard
    from runner.judge.wire import parse_submit

    request = parse_submit(message(action="profile"), 1 << 20)
    assert request.action == "profile"
    eligible = Leaderboard._eligible
    record = SimpleNamespace(action="profile", verdict="accepted", owner="alice", challenge="96")
    assert not eligible(record)
    assert eligible(SimpleNamespace(**{**vars(record), "action": "submit"}))
