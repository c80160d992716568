"""What a judge offers: its challenges (found by number, slug or the text of their
``challenge.py``) and its accelerators (found by name or alias, case and spacing aside)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from runner.catalog import ChallengeInfo, discover
from runner.judge.rejected import Rejected

CPU = "cpu"


def code_digest(text: str) -> str:
    """A digest of a challenge's source that ignores line endings and trailing blank space
    (LeetGPU's client sends the file as read on the user's machine)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    normal = "\n".join(line.rstrip() for line in lines).strip("\n")
    return hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Entry:
    id: str                  # unique in the catalogue: the folder name, or root/folder name
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


class Catalogue:
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


def _key(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key[len("nvidia"):] if key.startswith("nvidia") and len(key) > 6 else key


# GPU names a client may ask for (LeetGPU's client sends "T4" by default): each is served by
# an accelerator this judge has (`accelerator_map`, default: the first one)
KNOWN_GPUS = ("T4", "L4", "L40S", "A10G", "A10", "A40", "A100", "A100 80GB",
              "H100", "H100 80GB HBM3", "H100 SXM", "H100 PCIe", "H200", "B200", "GB200",
              "V100", "RTX 4090", "RTX 3090", "RTX A6000")
ANY = "*"


def _gpu_key(name: str) -> str:
    """A requested GPU name as looked up among the known ones ("NVIDIA Tesla T4" is T4)."""
    key = _key(name)
    return key[len("tesla"):] if key.startswith("tesla") and len(key) > 5 else key


def local_accelerators() -> List[str]:
    """This machine's accelerators: the name of each CUDA GPU, or ``cpu`` without one."""
    import torch

    if not torch.cuda.is_available():
        return [CPU]
    return list(dict.fromkeys(torch.cuda.get_device_name(k)
                              for k in range(torch.cuda.device_count())))


class Accelerators:
    """Accelerator names and their aliases. The first is the default for a submission that
    names none. A name that is none of them but a known GPU's (T4, A100, H100, H200, B200, ...)
    is served by the accelerator ``substitutes`` gives for it (or for ``"*"``), by default the
    first; a substitute of None refuses that name."""

    def __init__(self, names: Dict[str, List[str]],
                 substitutes: Optional[Dict[str, Optional[str]]] = None):
        if not names:
            raise ValueError("a judge needs at least one accelerator")
        self.names = list(names)
        self._lookup: Dict[str, str] = {}
        for name, aliases in names.items():
            for alias in [name, *aliases]:
                self._lookup.setdefault(_key(alias), name)
        self._substitutes: Dict[str, Optional[str]] = {}
        for requested, served_by in (substitutes or {}).items():
            if served_by is not None and _key(served_by) not in self._lookup:
                raise ValueError(f"accelerator_map: {requested} -> {served_by}, but this judge "
                                 f"has no accelerator {served_by!r} (it has "
                                 f"{', '.join(self.names)})")
            target = self._lookup[_key(served_by)] if served_by is not None else None
            self._substitutes[ANY if requested == ANY else _gpu_key(requested)] = target
        self._known = {_key(n) for n in KNOWN_GPUS} | {k for k in self._substitutes if k != ANY}

    @classmethod
    def local(cls, substitutes: Optional[Dict[str, Optional[str]]] = None) -> "Accelerators":
        return cls({name: [] for name in local_accelerators()}, substitutes)

    @classmethod
    def configured(cls, names: Dict[str, List[str]],
                   substitutes: Optional[Dict[str, Optional[str]]] = None) -> "Accelerators":
        """The configured accelerators, or this machine's when none are configured."""
        return cls(names, substitutes) if names else cls.local(substitutes)

    def resolve(self, requested: Optional[str]) -> str:
        if requested is None or not requested.strip():
            return self.names[0]
        found = self._lookup.get(_key(requested))
        if found is not None:
            return found
        key = _gpu_key(requested)
        if key in self._substitutes or (key in self._known and ANY in self._substitutes):
            served_by = self._substitutes.get(key, self._substitutes.get(ANY))
            if served_by is None:
                raise Rejected(f"this judge does not serve {requested[:40]!r} (refused by "
                               f"its accelerator_map); it has: {', '.join(self.names)}",
                               "unknown_accelerator", 404)
            return served_by
        if key in self._known:
            return self.names[0]
        raise Rejected(f"unknown accelerator {requested[:40]!r}; this judge has: "
                       f"{', '.join(self.names)} (a GPU name such as T4, A100, H100, H200 or "
                       f"B200 is served by {self.names[0]})", "unknown_accelerator", 404)

    def listing(self) -> List[Dict[str, object]]:
        served = {}
        for key in sorted(self._known):
            try:
                served.setdefault(self.resolve(key), []).append(key)
            except Rejected:
                pass
        return [{"name": n, "aliases": sorted(a for a, v in self._lookup.items()
                                              if v == n and a != _key(n)),
                 "serves": sorted(k for k in served.get(n, []) if k not in self._lookup),
                 "timed": n != CPU}      # a CPU worker checks submissions, never times them
                for n in self.names]
