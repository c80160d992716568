"""Reading ``challenge.html``: its sections, plain text, numbers, list items and the
``name = value`` assignments of its example. Only what the checks need; not a general parser."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

_HEADING = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1\s*>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_LI = re.compile(r"<li[^>]*>(.*?)</li\s*>", re.S | re.I)

# numbers in prose: thousands separators allowed ("32,768"), powers written 10^6
_PROSE_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
                           r"(?:\s*\^\s*[-+]?\d+)?")
# numbers in example arrays: commas separate elements
_VALUE_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|"
                           r"(?<![\w\\])[-+]?(?:inf|nan)\b")


@dataclass
class Section:
    level: int
    title: str         # the heading's text
    body: str          # the HTML up to the next heading


def text_of(fragment: str) -> str:
    """Plain text: tags removed, entities decoded, <sup>n</sup> written ^n, spaces collapsed
    (line breaks kept)."""
    fragment = re.sub(r"<sup[^>]*>(.*?)</sup\s*>", r"^\1", fragment, flags=re.S | re.I)
    fragment = re.sub(r"<br\s*/?>|</(p|li|pre|div|tr)\s*>", "\n", fragment, flags=re.I)
    text = html_lib.unescape(_TAG.sub("", fragment))
    text = text.replace("\u00a0", " ").replace("\u2212", "-")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line)


def sections(document: str) -> Tuple[str, List[Section]]:
    """The HTML before the first heading, and each heading with its body."""
    matches = list(_HEADING.finditer(document))
    lead = document[:matches[0].start()] if matches else document
    out = []
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(document)
        out.append(Section(int(match.group(1)), text_of(match.group(2)),
                           document[match.end():end]))
    return lead, out


def find_section(found: List[Section], pattern: str) -> Optional[Section]:
    regex = re.compile(pattern, re.I)
    for section in found:
        if regex.search(section.title):
            return section
    return None


def list_items(fragment: str) -> List[str]:
    return [text_of(item) for item in _LI.findall(fragment)]


def prose_number(token: str) -> float:
    """``32,768`` -> 32768; ``10^6`` -> 1e6; ``1e-3`` -> 0.001."""
    token = token.replace(",", "").replace(" ", "")
    if "^" in token:
        base, power = token.split("^", 1)
        return float(base) ** float(power)
    return float(token)


def numbers_in(text: str) -> List[float]:
    return [prose_number(m.group(0)) for m in _PROSE_NUMBER.finditer(text)]


# -- the example's assignments ------------------------------------------------------------------

@dataclass
class Printed:
    """One number as printed, and how closely it pins the value (half its last digit)."""

    value: float
    tolerance: float


def _printed(token: str) -> Printed:
    if token.lstrip("+-") in ("inf", "nan"):
        return Printed(float(token), 0.0)
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    half_ulp = 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return Printed(float(token), half_ulp * 1.001)


_ASSIGN = re.compile(r"(?<![\w.\[])([A-Za-z_]\w*)\s*((?:\[\s*\d+\s*\])*)\s*=(?!=)\s*")
_MATRIX_BEGIN = re.compile(r"\\begin\{([bpv]?matrix|array)\}")


def _value_extent(text: str, start: int) -> int:
    """The end of the value starting at ``start``: a bracketed list, a LaTeX matrix or one
    number."""
    if start < len(text) and text[start] == "[":
        depth = 0
        for k in range(start, len(text)):
            depth += {"[": 1, "]": -1}.get(text[k], 0)
            if depth == 0:
                return k + 1
        return len(text)
    begin = _MATRIX_BEGIN.match(text, start)
    if begin:
        end = text.find(f"\\end{{{begin.group(1)}}}", begin.end())
        return len(text) if end < 0 else end + len(begin.group(1)) + 6
    number = _VALUE_NUMBER.match(text, start)
    return number.end() if number else start


def example_assignments(fragment: str) -> Dict[str, List[Tuple[Tuple[int, ...], List[Printed]]]]:
    """name -> [(index, numbers)] for each ``name = value`` or ``name[i] = value`` in order.
    LaTeX matrices (``\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}``) count as values."""
    text = text_of(fragment)
    found: Dict[str, List[Tuple[Tuple[int, ...], List[Printed]]]] = {}
    for match in _ASSIGN.finditer(text):
        end = _value_extent(text, match.end())
        if end == match.end():
            continue
        value = text[match.end():end]
        value = re.sub(r"\\(begin|end)\{[a-z]*\}", " ", value)
        numbers = [_printed(m.group(0)) for m in _VALUE_NUMBER.finditer(value)]
        index = tuple(int(i) for i in re.findall(r"\d+", match.group(2)))
        found.setdefault(match.group(1), []).append((index, numbers))
    return found


def every_value(assignments: List[Tuple[Tuple[int, ...], List[Printed]]]) -> List[List[Printed]]:
    """Each value a name is given, in order: a plain assignment, or a run of indexed ones
    concatenated in index order (an example may show an output before and after the call)."""
    values: List[List[Printed]] = []
    rest = list(assignments)
    while rest:
        values.append(first_value(rest))
        rest = rest[max(1, _run_length(rest)):]
    return values


def _run_length(assignments: List[Tuple[Tuple[int, ...], List[Printed]]]) -> int:
    if not assignments or not assignments[0][0]:
        return 1
    seen = set()
    for k, (index, _) in enumerate(assignments):
        if not index or index in seen:
            return k
        seen.add(index)
    return len(assignments)


def first_value(assignments: List[Tuple[Tuple[int, ...], List[Printed]]]) -> List[Printed]:
    """The numbers of a name's first value: a plain assignment, or the run of indexed ones
    (``K[0] = ...``, ``K[1] = ...``) concatenated in index order."""
    if not assignments:
        return []
    first_index, first_numbers = assignments[0]
    if not first_index:
        return first_numbers
    run = []
    seen = set()
    for index, numbers in assignments:
        if not index or index in seen:
            break
        seen.add(index)
        run.append((index, numbers))
    return [n for _, numbers in sorted(run) for n in numbers]
