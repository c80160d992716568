"""The judge's web page in a real browser: Debian's headless Chromium driven by Playwright.

`run_challenge.py serve` on loopback with one CPU worker; the test signs in with a token,
checks the maths of a spec is typeset, submits a correct PyTorch solution to challenge 96 by
keyboard and watches the stream reach "accepted", sees the leaderboard entry appear after its
verification run ("not timed" on a CPU, listed apart from timed ranks), runs a wrong solution
and sees the worst element, and lists its submissions. Screenshots go to the test's tmp folder
(or $JUDGE_SCREENSHOT_DIR). Nothing the page loads may come from another origin.

Needs /usr/bin/chromium (Debian's `chromium` package; .ci/run installs it) and the `playwright`
Python package (the `browser` extra); skips with the reason otherwise. Never `playwright
install`: the browser is Debian's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from judge_helpers import CHALLENGES, REPO, free_port, token, write_config


def functional_tests_of_96() -> int:
    import torch

    from runner.catalog import find_challenge
    from runner.loading import load_challenge

    return len(load_challenge(find_challenge("96"), torch.device("cpu")).generate_functional_test())

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = os.environ.get("JUDGE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STEP_MS = 30_000          # a page step (the machine may be loaded)
GRADING_MS = 420_000      # a grading of 96 on a loaded 2-core CPU, queued behind another

CORRECT_96 = (REPO / "challenges/medium/96_int8_kv_cache_attention/reference"
              / "solution.pytorch.py").read_text()
WRONG_96 = '''import torch


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    # forgets the softmax: a plain average of the dequantized values
    v = V_int8.float() * v_scale[..., None]
    output.copy_(v.mean(dim=1))
'''


def _browser_or_skip():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` and `chromium-driver` "
                    f"packages (apt-get install chromium chromium-driver), or set "
                    f"$JUDGE_TEST_CHROMIUM")
    return pytest.importorskip("playwright.sync_api", reason="the `playwright` package is not "
                               "installed: pip install -e '.[dev]' (or '.[browser]')")


@pytest.fixture
def served(tmp_path):
    """`serve` with its own CPU worker, on loopback, with tokens."""
    config = write_config(tmp_path / "judge.yaml", workers="cpu:1",
                          challenges=[str(REPO / "challenges"), str(CHALLENGES)],
                          limits={"time_limit_s": 600},
                          leases={"lease_s": 30.0, "heartbeat_s": 3.0, "watchdog_margin_s": 30})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    private = tmp_path / "private"
    private.mkdir()
    # a lock and job folder of our own: other judges on this machine keep theirs
    env = {**os.environ, "PYTHONPATH": str(REPO), "JUDGE_LOCK_DIR": str(private),
           "TMPDIR": str(private)}
    log = open(tmp_path / "serve.log", "ab")
    proc = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve", "--port",
                             str(port), "--config", str(config), "--data-dir",
                             str(tmp_path / "data"), "--log-level", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {(tmp_path / 'serve.log').read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not become healthy within 120 s")
            time.sleep(0.3)
        yield url, tmp_path
    finally:
        import signal
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_the_page_signs_in_submits_streams_results_and_shows_the_leaderboard(served):
    sync_api = _browser_or_skip()
    url, tmp = served
    shots = Path(os.environ.get("JUDGE_SCREENSHOT_DIR") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    foreign = []

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(STEP_MS)
            page.on("request", lambda r: None if r.url.startswith((url, url.replace("http", "ws"),
                                                                   "data:")) else foreign.append(r.url))
            expect = sync_api.expect

            def shot(name: str) -> None:
                page.screenshot(path=str(shots / name), full_page=True)

            # -- sign in with a token, by keyboard -------------------------------------------
            page.goto(url + "/")
            expect(page.locator("#challenge-list")).to_contain_text("INT8 KV-Cache Attention")
            expect(page.locator("#whoami")).to_have_text("not signed in")
            page.locator("#token").focus()
            page.keyboard.type("not-a-valid-token-at-all-xx")
            page.keyboard.press("Enter")
            expect(page.locator("#whoami")).to_contain_text("sign-in failed: invalid token")
            page.locator("#token").fill(token("alice"))
            page.keyboard.press("Enter")
            expect(page.locator("#whoami")).to_have_text("signed in as alice")
            shot("01-challenges.png")

            # -- a spec's maths is typeset (KaTeX, served by the judge) -----------------------
            page.locator("#challenge-list a", has_text="Vector Addition").click()
            expect(page.locator("#spec .katex").first).to_be_visible()
            assert page.locator("#spec .katex").count() >= 4       # \(N\), two inline, one display
            assert page.locator("#spec .katex-display").count() == 1
            assert "\\(" not in page.locator("#spec").inner_text()

            # -- our own challenges' maths is typeset too, under the title the CLI lists ------
            for number, name, displays in (("96_int8_kv_cache_attention", "INT8 KV-Cache Attention", 4),
                                           ("97_int8_kv_cache_quantize", "INT8 KV-Cache Quantize-on-Store", 4),
                                           ("98_paged_int8_decode_attention",
                                            "Paged INT8 Decode Attention (GQA)", 6)):
                page.goto(url + f"/#/challenge/{number}")
                expect(page.locator("h1")).to_have_text(name)
                expect(page.locator("#spec .katex-display").first).to_be_visible()
                assert page.locator("#spec .katex-display").count() == displays, number
                spec_text = page.locator("#spec").inner_text()
                assert "\\[" not in spec_text and "\\mathtt" not in spec_text, number
                assert page.locator("#spec .katex-error").count() == 0, number
                if number.startswith("98"):
                    page.locator("#spec .katex-display").last.scroll_into_view_if_needed()
                    shot("07-98-maths.png")
                # a CPU worker's form says what a submit gets there
                expect(page.locator("#action-submit-label")).to_contain_text("not timed")
                expect(page.locator("#action-submit-label")).not_to_contain_text("ranked")

            # -- a correct PyTorch solution to 96, submitted by keyboard ---------------------
            page.goto(url + "/#/challenge/96_int8_kv_cache_attention")
            expect(page.locator("h1")).to_have_text("INT8 KV-Cache Attention")
            expect(page.locator("#language")).to_have_value("pytorch")
            assert "def solve" in page.locator("#source").input_value()    # the starter
            page.locator("#source").fill(CORRECT_96)
            page.locator("#action-run").focus()
            page.keyboard.press("ArrowRight")                 # the radio group: run -> submit
            expect(page.locator("#action-submit")).to_be_checked()
            page.locator("#source").focus()
            page.keyboard.press("Control+Enter")
            expect(page.locator("#progress li[data-status=queued]").first).to_be_visible()
            expect(page.locator("#progress li[data-status=running]").first).to_be_visible(
                timeout=GRADING_MS)
            expect(page.locator("#progress li[data-status=success]")).to_have_count(
                1, timeout=GRADING_MS)
            expect(page.locator("#verdict")).to_have_text("accepted")
            expect(page.locator("#tests tbody tr")).to_have_count(functional_tests_of_96() + 1)
            assert page.locator("#tests tr.fail").count() == 0
            expect(page.locator("#timing")).to_contain_text("not timed")
            assert page.locator("#progress li", has_text="running test").count() >= 1
            expect(page.locator("#lb-message")).to_have_attribute("data-state", "verifying")
            shot("02-accepted-verifying.png")

            # -- the leaderboard event after the verification run ---------------------------
            expect(page.locator("#lb-message")).to_have_attribute("data-state", "ranked",
                                                                  timeout=GRADING_MS)
            expect(page.locator("#lb-message")).to_contain_text("not timed")
            shot("03-ranked-not-timed.png")

            # -- a wrong solution: the worst element -----------------------------------------
            page.locator("#source").fill(WRONG_96)
            page.locator("#action-run").check()
            page.locator("#submit-btn").click()
            expect(page.locator("#progress li[data-status=error]")).to_have_count(
                1, timeout=GRADING_MS)
            expect(page.locator("#verdict")).to_have_text("wrong answer")
            worst = page.locator("#worst")
            expect(worst).to_be_visible()
            for label in ("index", "got", "expected", "abs error"):
                expect(worst.locator("dt", has_text=label)).to_be_visible()
            got = worst.locator("dt:text-is('got') + dd").inner_text()
            expected = worst.locator("dt:text-is('expected') + dd").inner_text()
            assert got != expected and float(got) != float(expected), (got, expected)
            assert page.locator("#lb-status").inner_text() == ""   # a run is never ranked
            shot("04-wrong-answer-worst-element.png")

            # -- a submission's own page, with no leaderboard event: no stray "null" ---------
            page.locator("#nav-mine").click()
            page.locator("#mine tbody tr", has_text="wrong answer").locator("a").click()
            expect(page.locator("h1")).to_contain_text("Submission")
            expect(page.locator("#progress li").first).to_be_visible()
            assert "null" not in page.locator("main").inner_text(), page.locator("main").inner_text()
            page.goto(url + "/#/challenge/96_int8_kv_cache_attention")
            expect(page.locator("h1")).to_have_text("INT8 KV-Cache Attention")

            # -- the leaderboard page: the entry, not timed, apart from timed ranks ----------
            page.locator("a", has_text="leaderboard").first.click()
            expect(page.locator("h1")).to_contain_text("Leaderboard")
            not_timed = page.locator("#lb-not-timed tbody tr")
            expect(not_timed).to_have_count(1)
            expect(not_timed.first).to_contain_text("alice")
            expect(not_timed.first).to_contain_text("not timed")
            # a CPU board has no empty timed table: it says why nothing is ranked by time
            expect(page.locator("#lb-ranks")).to_have_count(0)
            expect(page.locator("#lb-untimed")).to_contain_text("grades without a GPU")
            shot("05-leaderboard.png")

            # -- my submissions --------------------------------------------------------------
            page.locator("#nav-mine").focus()
            page.keyboard.press("Enter")
            rows = page.locator("#mine tbody tr")
            expect(rows).to_have_count(2)
            expect(page.locator("#mine")).to_contain_text("wrong answer")
            expect(page.locator("#mine")).to_contain_text("accepted")
            shot("06-my-submissions.png")
        finally:
            browser.close()

    # the API agrees with what the page showed
    board = httpx.get(f"{url}/api/v1/leaderboards/96").json()
    assert board["entries"] == [] and [e["owner"] for e in board["notTimed"]] == ["alice"]
    assert board["notTimed"][0]["verifyVerdict"] == "accepted"
    assert foreign == [], f"the page fetched from another origin: {foreign}"
    for name in ("01-challenges.png", "03-ranked-not-timed.png", "04-wrong-answer-worst-element.png",
                 "05-leaderboard.png", "07-98-maths.png"):
        assert (shots / name).stat().st_size > 10_000
    print(f"screenshots: {shots}")
