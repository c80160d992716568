"""Reading the first example of challenge.html: the values it shows, each with the parameter it
is written for (when the text says) and the side it is on (input or output).

The layouts read (this repository's, and the ones LeetGPU's challenges use):

* assignments, in a ``<pre>`` block or inline: ``A = [1.0, 2.0]``, nested lists, one slice per
  line (``K[0] = ...``, ``X[0,1] = ...``), ``mse = 0.25``, ``image (5, 5) = [...]``,
  ``out ≈ [...]``;
* labelled values: ``<code>Q</code> (2×4):`` or ``Matrix \\(A\\) (\\(2 \\times 2\\)):`` followed
  by a list or a LaTeX matrix; ``input [[1, 2], [3, 4]]``;
* LaTeX: ``\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}`` (also pmatrix, vmatrix, matrix,
  array), inside ``align``/``aligned`` blocks (``Q &= \\begin{bmatrix}...``), names written
  ``\\text{log_pi}`` or ``K\\_int8``, slices ``V_{d=0}``;
* values without a name after an ``Input:`` or ``Output:`` marker (``Input: [1.0, 2.0]``,
  ``Output: 36.0``): the side is known, the parameter is found by value.

Code comments (``// ...``, ``# ...``) are not data. Only the first example is read: the text
stops at an ``Example 2`` heading or line, or at an ``Input`` marker that follows an
``Output`` marker. A value holding anything but numbers (``\\log(1.3)``, ``1+0j``) is kept as
unreadable rather than misread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from runner.authoring.html import text_of

INPUT, OUTPUT = "input", "output"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)\b"
_VALUE_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|"
                           r"(?<![\w\\])[-+]?(?:inf|nan)\b")
_INDEX = r"(?:\[\s*\d+(?:\s*,\s*\d+)*\s*\])"
_MARKER = re.compile(r"(?<![\w.])(Input|Output|INPUT|OUTPUT)s?\b")
_MARKER_WORDS = {"Input", "Output", "Inputs", "Outputs", "INPUT", "OUTPUT"}
_MATRIX_BEGIN = re.compile(r"\\begin\{([bpvBV]?matrix|array)\}(\{[lcr|\s]*\})?")
_VALUE_START = re.compile(r"\[|\\begin\{(?:[bpvBV]?matrix|array)\}")
# the text just before a list or matrix that names it: `A =`, `Q (2×4):`, `input `
_LABEL = re.compile(rf"(?<![\w.\\])(?P<name>{_IDENT})(?P<index>{_INDEX}*)[ \t]*"
                    rf"(?:\([^()\n]*\)[ \t]*)?(?:(?:=|≈|:)\s*|[ \t]*)\Z")
# `name = 0.25` (a number on its own, not the start of an expression)
_ASSIGN_NUMBER = re.compile(rf"(?<![\w.\\])(?P<name>{_IDENT})(?P<index>{_INDEX}*)[ \t]*"
                            rf"(?:\([^()\n]*\)[ \t]*)?(?:=|≈)[ \t]*(?P<num>{_NUMBER})"
                            rf"(?![\w.\[(]|\s*[×*/^+\-]\s*[\w(\d])")
# `Output: 36.0` (a number alone on a marker's line)
_MARKER_NUMBER = re.compile(rf"(?<![\w.])(?:Input|Output)s?\b[ \t]*(?:\([^()\n]*\)[ \t]*)?:"
                            rf"[ \t]*(?P<num>{_NUMBER})[ \t]*(?:\([^()\n]*\)[ \t]*)?$", re.M)
_READABLE_REST = re.compile(r"^[\s,;&()\[\]\\]*$")


@dataclass
class Printed:
    """One number as printed, and how closely it pins the value."""

    value: float
    tolerance: float


@dataclass
class Shown:
    """One value in the example."""

    name: Optional[str]                # the name written with it, if any
    index: Tuple[int, ...]             # `name[1, 0] = ...` gives (1, 0)
    numbers: Optional[List[Printed]]   # None when the value is not plain numbers
    side: str                          # INPUT, OUTPUT, or "" before either marker
    start: int = 0                     # where it is in the example's text
    end: int = 0


def printed(token: str) -> Printed:
    """A number as printed, and how closely it pins the value: one unit of its last digit, so
    that a value rounded or cut off there (``0.244`` for 0.24473) both match."""
    if token.lstrip("+-") in ("inf", "nan"):
        return Printed(float(token), 0.0)
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return Printed(float(token), unit * 1.001)


# -- the text of the first example ------------------------------------------------------------

def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"(?:^|(?<=\s))(?://|#(?=\s|$)).*$", "", line)
                     for line in text.split("\n"))


def _simplify_latex(text: str) -> str:
    text = re.sub(r"\\\\\s*\[\s*[\d.]*\s*(?:em|pt|ex|mm)\s*\]", r"\\\\", text)  # \\[6pt]
    for _ in range(3):                         # nested \text{...} inside \mathrm{...}, say
        text = re.sub(r"\\(?:text|mathrm|texttt|textbf|mathbf|mathit|operatorname|mathtt)"
                      r"\s*\{([^{}]*)\}", r"\1", text)
    text = text.replace("\\_", "_")
    text = re.sub(rf"_\{{\s*{_IDENT}\s*=\s*(\d+)\s*\}}", r"[\1]", text)          # V_{d=0}
    text = re.sub(r"_\{\s*([A-Za-z0-9_]+)\s*\}", r"_\1", text)                    # W_{up}
    text = re.sub(r"\\mathbb\s*\{\s*\w\s*\}\s*\^\s*\{[^{}]*\}", " ", text)       # R^{2x3}
    text = re.sub(r"\\(?:begin|end)\{(?:aligned|align\*?|gathered|gather\*?|equation\*?|"
                  r"split|cases)\}", " ", text)
    text = re.sub(r"\\(?:left|right|displaystyle|quad|qquad)\b|\\[!,;:]", " ", text)
    text = re.sub(r"\\[()\[\]]", " ", text)                                        # \( \) \[ \]
    text = text.replace("&=", "=").replace("\\approx", "≈").replace("\\times", "×")
    return text


def first_example_text(fragment: str) -> str:
    """The plain text of the first example in the Example section's HTML, simplified."""
    text = _simplify_latex(_strip_comments(text_of(fragment)))
    second = re.search(r"(?im)^[ \t]*Example\s*2\b", text)
    if second:
        text = text[:second.start()]
    seen_output = False
    for marker in _MARKER.finditer(text):
        if marker.group(1).lower() == "output":
            seen_output = True
        elif seen_output:
            return text[:marker.start()]
    return text


# -- the values ---------------------------------------------------------------------------------

def _extent(text: str, start: int) -> int:
    """The end of the list or matrix starting at ``start``."""
    if text[start] == "[":
        depth = 0
        for k in range(start, len(text)):
            depth += {"[": 1, "]": -1}.get(text[k], 0)
            if depth == 0:
                return k + 1
        return len(text)
    begin = _MATRIX_BEGIN.match(text, start)
    end = text.find(f"\\end{{{begin.group(1)}}}", begin.end())
    return len(text) if end < 0 else end + len(begin.group(1)) + 6


def _numbers(value: str) -> Optional[List[Printed]]:
    body = _MATRIX_BEGIN.sub(" ", value)
    body = re.sub(r"\\end\{[a-zA-Z]*\}", " ", body).replace("\\hline", " ")
    if not _READABLE_REST.match(_VALUE_NUMBER.sub(" ", body)):
        return None
    return [printed(m.group(0)) for m in _VALUE_NUMBER.finditer(body)]


def _side(markers: List[Tuple[int, str]], position: int) -> str:
    side = ""
    for at, which in markers:
        if at >= position:
            break
        side = which
    return side


def _name(text: str, start: int, since: int) -> Tuple[Optional[str], Tuple[int, ...]]:
    label = _LABEL.search(text[max(since, start - 200):start])
    if label is None or label.group("name") in _MARKER_WORDS:
        return None, ()
    return label.group("name"), tuple(int(i) for i in re.findall(r"\d+", label.group("index")))


def example_values(fragment: str) -> List[Shown]:
    """Every value of the first example, in order."""
    text = first_example_text(fragment)
    markers = [(m.start(), m.group(1).lower()) for m in _MARKER.finditer(text)]
    found: List[Shown] = []
    position, previous_end = 0, 0
    while True:
        match = _VALUE_START.search(text, position)
        if match is None:
            break
        start = match.start()
        if text[start] == "[" and start > 0 and re.match(r"[\w\])]", text[start - 1]):
            position = start + 1            # an index, `x[0]`, not a value
            continue
        end = _extent(text, start)
        name, index = _name(text, start, previous_end)
        found.append(Shown(name, index, _numbers(text[start:end]), _side(markers, start), start,
                           end))
        position = previous_end = end
    taken = [(s.start, s.end) for s in found]
    for pattern in (_ASSIGN_NUMBER, _MARKER_NUMBER):
        for match in pattern.finditer(text):
            if any(a <= match.start("num") <= b for a, b in taken):
                continue
            name = match.groupdict().get("name")
            index = tuple(int(i) for i in re.findall(r"\d+", match.groupdict().get("index") or ""))
            found.append(Shown(name if name not in _MARKER_WORDS else None, index,
                               [printed(match.group("num"))], _side(markers, match.start("num")),
                               match.start("num"), match.end("num")))
            taken.append((match.start("num"), match.end("num")))
    return sorted(found, key=lambda s: s.start)


# -- grouping ------------------------------------------------------------------------------------

def runs(values: List[Shown]) -> List[List[Printed]]:
    """A name's values in order: a plain value, or a run of slices (``K[0] = ...``,
    ``K[1] = ...``) concatenated in index order; unreadable values are left out."""
    out: List[List[Printed]] = []
    k = 0
    while k < len(values):
        if not values[k].index:
            if values[k].numbers is not None:
                out.append(values[k].numbers)
            k += 1
            continue
        run, seen = [], set()
        while k < len(values) and values[k].index and values[k].index not in seen:
            seen.add(values[k].index)
            run.append(values[k])
            k += 1
        if all(v.numbers is not None for v in run):
            out.append([n for v in sorted(run, key=lambda v: v.index) for n in v.numbers])
    return out


def by_name(values: List[Shown], names: List[str]) -> Tuple[Dict[str, List[Shown]], List[Shown]]:
    """(parameter name -> its values, in order; the other values, each name's slices joined
    into one)."""
    named: Dict[str, List[Shown]] = {}
    others: Dict[str, List[Shown]] = {}
    loose: List[Shown] = []
    for value in values:
        if value.name in names:
            named.setdefault(value.name, []).append(value)
        elif value.name is not None and value.index:
            others.setdefault(value.name, []).append(value)
        else:
            loose.append(value)
    for slices in others.values():
        for numbers in runs(slices):
            loose.append(Shown(None, (), numbers, slices[0].side, slices[0].start))
    return named, sorted(loose, key=lambda s: s.start)
