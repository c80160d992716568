"""Reading challenge.html: the Constraints forms and example layouts docs/authoring.md
promises, and what they must not be mistaken for."""

import pytest

from runner.authoring.constraints import parse_constraint_items
from runner.authoring.examples import by_name, example_values, runs
from runner.authoring.html import sections


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


def shown(html: str, names):
    """parameter name -> the numbers of each value shown for it; and the unnamed values."""
    named, loose = by_name(example_values(html), list(names))
    return ({n: [[p.value for p in v] for v in runs(values)] for n, values in named.items()},
            [(v.side, [p.value for p in v.numbers] if v.numbers is not None else None)
             for v in loose])


def test_example_layouts():
    named, _ = shown("""<pre>
Input:  A = [[1.0, 2.0],
             [3.5, -4]]
K[1] = [5, 6]
K[0] = [3, 4]
Output: C = \\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}
</pre><p><code>N</code> = 4</p>""", ["A", "K", "C", "N"])
    assert named["A"][0] == [1.0, 2.0, 3.5, -4.0]
    assert named["K"][0] == [3, 4, 5, 6]      # by index
    assert named["C"][0] == [1, 2, 3, 4]
    assert named["N"][0] == [4]
    values = example_values("<pre>A = [1.0, 2.25]</pre>")
    assert values[0].numbers[0].tolerance == pytest.approx(0.1, rel=0.01)    # "1.0": one digit
    assert values[0].numbers[1].tolerance == pytest.approx(0.01, rel=0.01)


def test_leetgpu_plain_input_output_blocks():
    """Values without names after Input:/Output: markers, a bare number as the output, and
    scalars written next to them; code comments are not data."""
    named, loose = shown("""<pre>
Input: [1.0, 2.0, 3.0], N = 3     // three values
Output: 36.0
</pre>""", ["input", "output", "N"])
    assert named == {"N": [[3]]}
    assert loose == [("input", [1.0, 2.0, 3.0]), ("output", [36.0])]
    named, _ = shown("""<pre>
agents = [
  0.0, 1.0,    // Agent 0: [x, y]
  3.0, 4.0     # Agent 1: [x, y]
]
</pre>""", ["agents"])
    assert named == {"agents": [[0.0, 1.0, 3.0, 4.0]]}


def test_leetgpu_latex_matrices_with_labels():
    named, loose = shown(r"""<p>Input:<br>
Matrix \(A\) (\(2 \times 2\)):
\[ \begin{bmatrix} 1.0 & 2.0 \\ 3.0 & 4.0 \end{bmatrix} \]
<code>K\_int8</code> (1&times;2): \(\begin{bmatrix} 10 & -128 \end{bmatrix}\)
\[ \begin{aligned} V_{d=0} &= \begin{bmatrix} 1 & 2 \end{bmatrix} \\[6pt]
V_{d=1} &= \begin{bmatrix} 3 & 4 \end{bmatrix} \end{aligned} \]
\text{log_pi} = \begin{bmatrix} \log(1.3) & 0.5 \end{bmatrix}
Output:<br>
\[ \begin{bmatrix} 7 \\ 8 \end{bmatrix} \]</p>""", ["A", "K_int8", "log_pi", "out"])
    assert named == {"A": [[1.0, 2.0, 3.0, 4.0]], "K_int8": [[10, -128]], "log_pi": []}
    assert loose == [("input", [1, 2, 3, 4]), ("output", [7, 8])]   # V's slices joined


def test_only_the_first_example_is_read():
    for html in ("<h3>Example 1:</h3><pre>x = [1]</pre><p>Example 2:</p><pre>x = [2]</pre>",
                 "<pre>Input: x = [1]\nOutput: y = [2]\n\nInput: x = [3]\nOutput: y = [4]</pre>"):
        named, _ = shown(html, ["x", "y"])
        assert named["x"] == [[1]]


def test_sections_by_heading_at_any_level():
    lead, found = sections("<p>intro</p><h2>Example 1:</h2><pre>x</pre><h4>Constraints</h4><ul></ul>")
    assert "intro" in lead and [s.title for s in found] == ["Example 1:", "Constraints"]


def test_an_output_may_be_shown_before_and_after_the_call():
    named, _ = shown("<pre>cache = 7\ncache[0] = [1, 2]\ncache[1] = [3, 4]\n</pre>", ["cache"])
    assert named["cache"] == [[7], [1, 2, 3, 4]]


def test_examples_section_holds_its_subheadings():
    _, found = sections("<h2>Examples</h2><h3>Example 1:</h3><pre>a</pre><h3>Example 2:</h3>"
                        "<pre>b</pre><h2>Constraints</h2><ul></ul>")
    assert "Example 2" in found[0].body and "Constraints" not in found[0].body
    assert found[0].own == ""
