"""What a judge offers: its challenges (found by number, slug or the text of their
``challenge.py``) and its accelerators (found by name or alias, case and spacing aside)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from runner.challenge import ChallengeInfo, discover
from runner.judge.protocol import ProtocolError

CPU = "cpu"


def code_digest(text: str) -> str:
    """A digest of a challenge's source that ignores line endings and trailing blank space
    (LeetGPU's client sends the file as read on the user's machine)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    normal = "\n".join(line.rstrip() for line in lines).strip("\n")
    return hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Entry:
    info: ChallengeInfo
    digest: str

    def to_dict(self) -> Dict[str, object]:
        return {"id": self.info.display, "number": self.info.number, "slug": self.info.slug,
                "difficulty": self.info.difficulty}


class Catalogue:
    """The server's own challenges: the folders in ``roots`` (default: this repository's)."""

    def __init__(self, roots: Sequence[Path] = ()):
        infos: List[ChallengeInfo] = []
        for root in roots:
            infos += discover(Path(root))
        if not roots:
            infos = discover()
        self.entries: List[Entry] = []
        seen = set()
        for info in infos:
            if info.path.name in seen:    # the first root holding a folder name wins
                continue
            seen.add(info.path.name)
            text = (info.path / "challenge.py").read_text(encoding="utf-8", errors="replace")
            self.entries.append(Entry(info, code_digest(text)))
        self._by_digest = {e.digest: e.info for e in self.entries}

    def find(self, ref: Union[int, str]) -> ChallengeInfo:
        """A challenge by number, slug or folder name; :class:`ProtocolError` when unknown."""
        query = str(ref).strip()
        for e in self.entries:
            if query in (str(e.info.number), e.info.slug, e.info.path.name):
                return e.info
        known = ", ".join(e.info.display for e in self.entries[:20]) or "none"
        raise ProtocolError(f"unknown challenge {query[:40]!r}; this judge has: {known} "
                            f"(GET /api/v1/challenges lists them)", "unknown_challenge", 404)

    def match_code(self, text: str) -> Optional[ChallengeInfo]:
        """The server's challenge whose ``challenge.py`` is ``text`` (line endings aside)."""
        return self._by_digest.get(code_digest(text))

    def listing(self) -> List[Dict[str, object]]:
        return [e.to_dict() for e in self.entries]


def _key(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key[len("nvidia"):] if key.startswith("nvidia") and len(key) > 6 else key


def local_accelerators() -> List[str]:
    """This machine's accelerators: the name of each CUDA GPU, or ``cpu`` without one."""
    import torch

    if not torch.cuda.is_available():
        return [CPU]
    return list(dict.fromkeys(torch.cuda.get_device_name(k)
                              for k in range(torch.cuda.device_count())))


class Accelerators:
    """Accelerator names and their aliases. The first is the default for a submission that
    names none."""

    def __init__(self, names: Dict[str, List[str]]):
        if not names:
            raise ValueError("a judge needs at least one accelerator")
        self.names = list(names)
        self._lookup: Dict[str, str] = {}
        for name, aliases in names.items():
            for alias in [name, *aliases]:
                self._lookup.setdefault(_key(alias), name)

    @classmethod
    def local(cls) -> "Accelerators":
        return cls({name: [] for name in local_accelerators()})

    def resolve(self, requested: Optional[str]) -> str:
        if requested is None or not requested.strip():
            return self.names[0]
        found = self._lookup.get(_key(requested))
        if found is None:
            raise ProtocolError(f"unknown accelerator {requested[:40]!r}; this judge has: "
                                f"{', '.join(self.names)}", "unknown_accelerator", 404)
        return found

    def listing(self) -> List[Dict[str, object]]:
        return [{"name": n, "aliases": sorted(a for a, v in self._lookup.items()
                                              if v == n and a != _key(n))} for n in self.names]
