"""A wrong answer's report: "worst" is the element furthest past its own tolerance (said so),
the worst few are shown, worst first, and the largest abs err is placed when it is not among
them (so "max abs err 1.28" above "worst ... abs err 0.811" is explained)."""

import torch

from runner.check import SHOWN_WORST, compare
from runner.report import Result, render_text
from runner.report import TestReport as Report


def test_worst_is_by_excess_over_the_tolerance_and_the_worst_few_are_shown():
    expected = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.1, 5.0]])
    got = torch.tensor([[101.28, 0.5, 0.0], [0.05, 0.911, 5.0]])
    c = compare("out", got, expected, 1e-3, 1e-3)
    assert c.mismatches == 4
    # excess: [1,1] 0.811/0.0011, [0,1] 0.5/0.001, [1,0] 0.05/0.001, [0,0] 1.28/0.101
    assert [e.index for e in c.examples] == [[1, 1], [0, 1], [1, 0], [0, 0]]
    assert c.worst.index == [1, 1] and c.worst.allowed == pytest_approx(0.0011)
    assert c.largest.index == [0, 0] and c.largest.abs_error == pytest_approx(1.28)
    text = c.describe(1e-3, 1e-3)
    lines = text.splitlines()
    assert "worst (furthest past its tolerance) at [1, 1]: got 0.911, expected 0.1" in lines[0]
    assert "allowed 0.0011" in lines[0]
    assert [line.split(":")[0].strip() for line in lines[1:SHOWN_WORST]] == \
        ["next worst at [0, 1]", "next worst at [1, 0]"]
    # [0, 0] has the largest error but is 4th: placed, and why it is not the worst
    assert "the largest abs err, 1.28 at [0, 0]" in lines[-1]
    assert "less far past its tolerance (0.101)" in lines[-1]


def test_the_largest_error_within_a_wide_tolerance_is_said_to_be_within_it():
    expected = torch.tensor([1000.0, 0.0])
    got = torch.tensor([1000.9, 0.01])
    text = compare("out", got, expected, 1e-3, 1e-3).describe(1e-3, 1e-3)
    assert "the largest abs err, 0.9 at [0], is within its tolerance (1" in text, text


def test_the_text_report_shows_every_line_of_the_worst_few():
    expected = torch.zeros(100)
    got = torch.arange(100, dtype=torch.float32) / 100
    c = compare("out", got, expected, 1e-3, 0.0)
    test = Report("test 1", False, {"n": 100}, c.max_abs_error, c.max_rel_error,
                      c.mismatches, c.total, message=c.describe(1e-3, 0.0))
    text = render_text(Result(verdict="wrong_answer", tests=[test]))
    assert "at [99]: got 0.99" in text and "next worst at [98]" in text and "next worst at [97]" in text


def pytest_approx(x):
    import pytest
    return pytest.approx(x, rel=1e-6)
