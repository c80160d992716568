"""The accelerators a judge offers, found by name or alias (case and spacing aside), and the
GPU names a client may ask for that one of them serves. The server resolves a submission's
accelerator with it; ``serve`` maps its local GPUs onto it."""

from __future__ import annotations

import re
from typing import Dict, List, Optional

from runner.judge.rejected import Rejected

CPU = "cpu"


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
    import torch   # lazy: the judge's API imports no torch until it must name the GPUs

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
