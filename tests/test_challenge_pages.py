"""Our challenges' pages: the maths is written for KaTeX (\\( \\) and \\[ \\], no formula left as
preformatted text to wrap mid-line), and the page's title is the name the CLI lists. The page
itself, typeset in a real browser, is checked by tests/judge/test_judge_web_browser.py."""

import re

import pytest

from runner.catalog import find_challenge
from runner.judge.server.routes.challenges import challenge_title
from runner.listing import describe

NUMBERS = ["96", "97", "98"]


def _task_section(html: str) -> str:
    start = html.index("<h3>Task</h3>")
    return html[start:html.index("<h3>", start + 1)]


@pytest.mark.parametrize("number", NUMBERS)
def test_the_specs_maths_is_typeset_not_preformatted(number):
    html = (find_challenge(number).path / "challenge.html").read_text()
    task = _task_section(html)
    assert task.count("\\[") >= 4 and task.count("\\[") == task.count("\\]"), number
    assert "<pre>" not in task, f"{number}: a formula is still preformatted text"
    # every delimiter closes on its own line: KaTeX's auto-render needs the pair in one text node
    for line in task.splitlines():
        assert line.count("\\[") == line.count("\\]"), line


@pytest.mark.parametrize("number", NUMBERS)
def test_the_pages_title_is_the_name_the_cli_lists(number):
    info = find_challenge(number)
    html = (info.path / "challenge.html").read_text()
    assert challenge_title(html, "") == describe(info).name


def test_a_cpu_accelerator_is_listed_as_not_timed():
    from runner.judge.accelerators import Accelerators

    listing = {a["name"]: a for a in Accelerators.configured({"cpu": [], "H100": []}).listing()}
    assert listing["cpu"]["timed"] is False and listing["H100"]["timed"] is True


def test_the_page_never_shows_a_missing_part_as_text():
    """show() drops the parts a view leaves out (a submission without a leaderboard event
    passed null, which replaceChildren printed as "null")."""
    from pathlib import Path

    static = Path(__file__).resolve().parent.parent / "runner" / "judge" / "server" / "static"
    js = (static / "app.js").read_text()
    body = re.search(r"function show\(\.\.\.nodes\) \{(.*?)\n\}", js, re.S).group(1)
    assert "filter(" in body and "null" in body
