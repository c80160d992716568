"""A result's JSON is strict JSON: non-finite numbers (a NaN output, an infinite error) become
null there, while the text report still shows them."""

import json
import math

import pytest

from runner.report import Result, json_safe, render_text
from runner.report import TestReport as CaseReport


def _refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def test_non_finite_numbers_are_null_in_json_and_shown_in_text():
    result = Result(verdict="wrong_answer", message="1 of 2 tests failed",
                    tests=[CaseReport(name="test 1", passed=False, max_abs_error=math.inf,
                                      max_rel_error=math.nan, mismatches=3, total=4,
                                      worst={"index": [0], "got": math.nan, "expected": 1.5})],
                    performance={"solution": {"median_ms": 0.25, "spread": [math.inf, -math.inf]}})
    data = json.loads(result.to_json(), parse_constant=_refuse)
    test = data["tests"][0]
    assert test["max_abs_error"] is None and test["max_rel_error"] is None
    assert test["worst"] == {"index": [0], "got": None, "expected": 1.5}
    assert data["performance"]["solution"] == {"median_ms": 0.25, "spread": [None, None]}
    json.dumps(result.to_dict(), allow_nan=False)       # what httpx and Starlette do
    assert "inf" in render_text(result)


@pytest.mark.parametrize("value, expected", [
    (1.0, 1.0), (0, 0), (True, True), ("nan", "nan"), (None, None),
    (math.nan, None), ((1.0, math.inf), [1.0, None]), ({"a": {"b": [-math.inf]}}, {"a": {"b": [None]}}),
])
def test_json_safe(value, expected):
    assert json_safe(value) == expected
