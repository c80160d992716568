"""``run_challenge.py --action list``: every challenge found, with its number, slug, name,
difficulty, and the languages it has starters and reference solutions for.

Challenges come from ``$CHALLENGES_PATH`` and this repository (see
:func:`runner.challenge.challenge_roots`); ``run_challenge.py FOLDER --action list`` lists the
challenges under FOLDER instead: a checkout of LeetGPU's repository, its ``challenges/``, a
difficulty folder such as ``challenges/easy``, or one challenge's folder.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import torch

from runner.authoring.files import shown
from runner.challenge import (ChallengeInfo, discover, is_leetgpu_format, load_challenge,
                              reference_files, starter_files)
from runner.errors import UsageError


@dataclass
class Listed:
    number: Optional[int]
    slug: str
    name: str
    difficulty: str
    format: str                    # "repo", "leetgpu", or "broken" when challenge.py fails to load
    starters: List[str] = field(default_factory=list)
    references: List[str] = field(default_factory=list)
    path: str = ""
    error: str = ""                # why challenge.py did not load


def describe(info: ChallengeInfo) -> Listed:
    """One challenge's entry; loading it on "meta" reads its name without allocating."""
    entry = Listed(number=info.number, slug=info.slug, name="", difficulty=info.difficulty,
                   format="repo", starters=list(starter_files(info)),
                   references=list(reference_files(info)), path=shown(info.path))
    try:
        challenge = load_challenge(info, torch.device("meta"))
    except Exception as exc:  # noqa: BLE001 - a broken challenge.py is listed, not fatal
        entry.format, entry.error = "broken", f"{type(exc).__name__}: {exc}"
        return entry
    entry.name = str(getattr(challenge, "name", ""))
    entry.format = "leetgpu" if is_leetgpu_format(challenge) else "repo"
    return entry


def list_challenges(root: Optional[Path] = None) -> List[Listed]:
    return [describe(info) for info in discover(root)]


def render_text(entries: List[Listed]) -> str:
    if not entries:
        return "no challenges found"
    rows = [("#", "slug", "name", "difficulty", "starters", "references")]
    for e in entries:
        name = e.name if e.format != "broken" else f"(does not load: {e.error})"
        if e.format == "leetgpu":
            name += " [LeetGPU format]"
        rows.append(("" if e.number is None else str(e.number), e.slug, name, e.difficulty,
                     ", ".join(e.starters) or "-", ", ".join(e.references) or "-"))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def list_command(args) -> int:
    root = None
    if getattr(args, "challenge", None):
        root = Path(args.challenge).expanduser().resolve()
        if not root.is_dir():
            raise UsageError(f"{args.challenge} is not a folder; `--action list` takes a folder: "
                             f"a checkout, its challenges/, a difficulty folder or one challenge "
                             f"(or none, for every known challenge)")
    entries = list_challenges(root)
    if root is not None and not entries:
        raise UsageError(f"no challenge found under {args.challenge}: `--action list` looks for "
                         f"<difficulty>/<number>_<slug>/challenge.py in a challenges folder (or in "
                         f"a checkout's challenges/), <number>_<slug>/challenge.py in a "
                         f"difficulty folder, or challenge.py in the folder itself")
    if getattr(args, "json", False):
        print(json.dumps({"challenges": [asdict(e) for e in entries]}, indent=2))
    else:
        print(render_text(entries))
    broken = [e for e in entries if e.format == "broken"]
    if broken:
        print(f"{len(broken)} challenge(s) do not load: run `--action validate` on them",
              file=sys.stderr)
    return 0
