"""Reading ``challenge.html``: its sections, plain text, numbers and list items (the example's
values: :mod:`runner.authoring.examples`). Only what the checks need; not a general parser."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

_HEADING = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1\s*>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_LI = re.compile(r"<li[^>]*>(.*?)</li\s*>", re.S | re.I)

# numbers in prose: thousands separators allowed ("32,768"), powers written 10^6
_PROSE_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
                           r"(?:\s*\^\s*[-+]?\d+)?")


@dataclass
class Section:
    level: int
    title: str         # the heading's text
    body: str          # the HTML up to the next heading of the same or a higher level
    own: str = ""      # the HTML up to the next heading of any level


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
    """The HTML before the first heading, and each heading with its body: everything up to the
    next heading of the same or a higher level (an ``<h2>Examples`` holds its ``<h3>``s)."""
    matches = list(_HEADING.finditer(document))
    lead = document[:matches[0].start()] if matches else document
    out = []
    for k, match in enumerate(matches):
        level = int(match.group(1))
        end = next((m.start() for m in matches[k + 1:] if int(m.group(1)) <= level),
                   len(document))
        own_end = matches[k + 1].start() if k + 1 < len(matches) else len(document)
        out.append(Section(level, text_of(match.group(2)), document[match.end():end],
                           document[match.end():own_end]))
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
