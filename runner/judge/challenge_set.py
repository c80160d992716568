"""The challenges a judge offers, found by number, slug, folder name or the text of their
``challenge.py``: the server admits submissions for them and a worker's job process finds the
one it grades by the same id. (Its accelerators are :mod:`runner.judge.accelerators`.)"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from runner.catalog import ChallengeInfo, discover
from runner.judge.rejected import Rejected


def code_digest(text: str) -> str:
    """A digest of a challenge's source that ignores line endings and trailing blank space
    (LeetGPU's client sends the file as read on the user's machine)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    normal = "\n".join(line.rstrip() for line in lines).strip("\n")
    return hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Entry:
    id: str                  # unique in the challenge set: the folder name, or root/folder name
    info: ChallengeInfo
    digest: str
    root: str                # the label of the root it came from

    def to_dict(self) -> Dict[str, object]:
        return {"id": self.id, "number": self.info.number, "slug": self.info.slug,
                "difficulty": self.info.difficulty, "root": self.root}


def root_label(root: Path) -> str:
    """A short name for a challenge root: its checkout's folder name (``leetgpu-challenges``
    for ``.../leetgpu-challenges/challenges``)."""
    root = Path(root).resolve()
    return root.parent.name if root.name == "challenges" and root.parent.name else root.name


class ChallengeSet:
    """The server's own challenges: the folders in ``roots`` (default: this repository's), each
    a challenges folder, a checkout holding one in ``challenges/`` (LeetGPU's layout), or a
    difficulty folder. Every challenge of every root is reachable: a folder name found in two
    roots (LeetGPU's 96 and ours) gets the id ``<root label>/<folder name>`` in both."""

    def __init__(self, roots: Sequence[Path] = ()):
        found: List[tuple] = []          # (root label, info)
        labels: List[str] = []
        self.empty_roots: List[Path] = []
        for root in (roots or [None]):
            infos = discover(Path(root)) if root is not None else discover()
            label = root_label(Path(root)) if root is not None else "this repository"
            while label in labels:       # two roots of the same name
                label += "+"
            labels.append(label)
            if root is not None and not infos:
                self.empty_roots.append(Path(root))
            paths = {info.path.resolve() for _, info in found}
            # the same folder reached twice (a checkout and its challenges/): kept once
            found += [(label, info) for info in infos if info.path.resolve() not in paths]
        names = [info.path.name for _, info in found]
        self.entries: List[Entry] = []
        for label, info in found:
            key = info.path.name if names.count(info.path.name) == 1 else f"{label}/{info.path.name}"
            text = (info.path / "challenge.py").read_text(encoding="utf-8", errors="replace")
            self.entries.append(Entry(key, info, code_digest(text), label))
        self._by_id = {e.id: e.info for e in self.entries}
        self._by_digest: Dict[str, ChallengeInfo] = {}
        for e in self.entries:
            self._by_digest.setdefault(e.digest, e.info)

    def id_of(self, info: ChallengeInfo) -> str:
        """The id under which ``info`` is stored and found again (by a worker, say)."""
        return next(e.id for e in self.entries if e.info.path == info.path)

    def find(self, ref: Union[int, str]) -> ChallengeInfo:
        """A challenge by id, number, slug or folder name; :class:`Rejected` when unknown
        or when it names challenges of two roots."""
        query = str(ref).strip()
        if query in self._by_id:
            return self._by_id[query]
        matches = [e for e in self.entries
                   if query in (str(e.info.number), e.info.slug, e.info.path.name)]
        if len(matches) == 1:
            return matches[0].info
        if matches:
            raise Rejected(f"{query[:40]!r} names {len(matches)} challenges: "
                           f"{', '.join(e.id for e in matches)}; send one of these ids, or "
                           f"the challenge's challenge.py as `challengeCode`",
                           "ambiguous_challenge", 409)
        known = ", ".join(e.id for e in self.entries[:20]) or "none"
        raise Rejected(f"unknown challenge {query[:40]!r}; this judge has: {known} "
                       f"(GET /api/v1/challenges lists them)", "unknown_challenge", 404)

    def match_code(self, text: str) -> Optional[ChallengeInfo]:
        """The server's challenge whose ``challenge.py`` is ``text`` (line endings aside), in
        any root."""
        return self._by_digest.get(code_digest(text))

    def listing(self) -> List[Dict[str, object]]:
        return [e.to_dict() for e in self.entries]
