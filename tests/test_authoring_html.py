"""Reading challenge.html: the Constraints forms and example layouts docs/authoring.md
promises, and what they must not be mistaken for."""

import pytest

from runner.authoring.constraints import parse_constraint_items
from runner.authoring.html import example_assignments, first_value, sections


@pytest.mark.parametrize("item, rules", [
    ("1 &le; <code>N</code> &le; 100,000", {"N": {"min": 1, "max": 100000}}),
    ("1 <= N < 1024", {"N": {"min": 1, "lt": 1024}}),
    ("<code>N</code> ≤ 1,024", {"N": {"max": 1024}}),
    ("eps > 0", {"eps": {"gt": 0}}),
    ("1 ≤ kernel_size ≤ input_size", {"kernel_size": {"min": 1, "max": "input_size"}}),
    ("8 ≤ head_dim ≤ 256, and head_dim is a multiple of 8",
     {"head_dim": {"min": 8, "max": 256, "multiple_of": 8}}),
    ("k_scale and v_scale are positive", {"k_scale": {"gt": 0}, "v_scale": {"gt": 0}}),
    ("weights are non-negative", {"weights": {"min": 0}}),
    ("1 ≤ N ≤ 10^6", {"N": {"min": 1, "max": 1000000}}),
    ("A and B have the same length", {}),                     # prose: not a rule
    ("M * N ≤ 1,000,000", {}),                                 # a product is not a bound on N
])
def test_constraint_forms(item, rules):
    from runner.authoring.html import text_of

    parsed, performance = parse_constraint_items([text_of(item)])
    assert parsed == rules and performance is None


def test_performance_bullet():
    _, performance = parse_constraint_items(
        ["Performance is measured with num_heads = 32, seq_len = 8,192, head_dim = 128"])
    assert performance == {"num_heads": 32, "seq_len": 8192, "head_dim": 128}


def test_example_layouts():
    found = example_assignments("""<pre>
Input:  A = [[1.0, 2.0],
             [3.5, -4]]
K[1] = [5, 6]
K[0] = [3, 4]
Output: C = \\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}
</pre><p><code>N</code> = 4</p>""")
    assert [p.value for p in first_value(found["A"])] == [1.0, 2.0, 3.5, -4.0]
    assert [p.value for p in first_value(found["K"])] == [3, 4, 5, 6]      # by index
    assert [p.value for p in first_value(found["C"])] == [1, 2, 3, 4]
    assert [p.value for p in first_value(found["N"])] == [4]
    assert first_value(found["A"])[0].tolerance == pytest.approx(0.05, rel=0.01)  # "1.0"


def test_sections_by_heading_at_any_level():
    lead, found = sections("<p>intro</p><h2>Example 1:</h2><pre>x</pre><h4>Constraints</h4><ul></ul>")
    assert "intro" in lead and [s.title for s in found] == ["Example 1:", "Constraints"]


def test_an_output_may_be_shown_before_and_after_the_call():
    from runner.authoring.html import every_value

    found = example_assignments("<pre>cache = 7\ncache[0] = [1, 2]\ncache[1] = [3, 4]\n</pre>")
    assert [[p.value for p in v] for v in every_value(found["cache"])] == [[7], [1, 2, 3, 4]]
