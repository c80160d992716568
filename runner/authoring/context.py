"""What the checks share: the loaded challenge, its generated cases and reference runs, each
computed once and only when a check asks for it. Errors in the author's code are kept as a
one-line description (with the line of ``challenge.py`` where it happened), not raised."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from runner.buffers import fill_initial_, promised_initial
from runner.catalog import ChallengeInfo
from runner.check import bitwise_equal
from runner.cases import GENERATORS, case_bytes, with_seed
from runner.challenge import ChallengeBase
from runner.loading import is_leetgpu_format, load_challenge
from runner.policy import MEMORY_BUDGET_BYTES, MEMORY_FACTOR
GRADING_SEED = 0                     # the seed `run` and `submit` use by default

Case = Dict[str, Any]


def describe_exception(exc: BaseException, source: Optional[Path] = None) -> str:
    """``ValueError: message (challenge.py line 12)``: the deepest frame in ``source``."""
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if source is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename).resolve() == source.resolve()]
        if frames:
            text += f" ({source.name} line {frames[-1].lineno})"
    return text


def tensors_of(case: Case) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in case.items() if isinstance(v, torch.Tensor)}


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


@dataclass
class ReferenceRun:
    """The reference run once on a copy of a case, its "out" tensors poisoned first."""

    label: str
    outputs: Dict[str, torch.Tensor] = field(default_factory=dict)   # every tensor after the call
    modified: List[str] = field(default_factory=list)     # tensors whose contents changed
    error: str = ""


@dataclass
class Generated:
    example: Optional[Case] = None
    functional: List[Case] = field(default_factory=list)
    performance: Optional[Case] = None
    errors: Dict[str, str] = field(default_factory=dict)   # generator name -> what went wrong
    notes: List[str] = field(default_factory=list)

    def labelled(self, performance: bool = True) -> List[Tuple[str, Case]]:
        cases = [("example", self.example)] if self.example is not None else []
        cases += [(f"functional test {k + 1}", c) for k, c in enumerate(self.functional)]
        if performance and self.performance is not None:
            cases.append(("performance test", self.performance))
        return cases


class Context:
    """One validation: a challenge folder, the device it runs on, and cached results."""

    def __init__(self, info: ChallengeInfo, device: torch.device,
                 progress: Callable[[str], None] = lambda message: None):
        self.info = info
        self.device = torch.device(device)
        self.source = info.path / "challenge.py"
        self.progress = progress      # for long steps (grading a file); goes to stderr

    # -- loading ------------------------------------------------------------------------------
    @cached_property
    def _loaded(self) -> Tuple[Optional[ChallengeBase], str]:
        try:
            return load_challenge(self.info, self.device), ""
        except BaseException as exc:  # noqa: BLE001 - anything the author's module raises
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None, describe_exception(exc, self.source)

    @property
    def challenge(self) -> Optional[ChallengeBase]:
        return self._loaded[0]

    @property
    def load_error(self) -> str:
        return self._loaded[1]

    @property
    def format(self) -> str:
        challenge = self.challenge
        return "leetgpu" if challenge is not None and is_leetgpu_format(challenge) else "repo"

    def call(self, what: str, fn, *args, **kwargs) -> Tuple[Any, str]:
        """``fn(*args, **kwargs)`` and "", or None and what it raised."""
        try:
            return fn(*args, **kwargs), ""
        except Exception as exc:  # noqa: BLE001 - the author's code
            return None, f"{what} raised {describe_exception(exc, self.source)}"

    # -- the signature ------------------------------------------------------------------------
    @cached_property
    def _signature(self) -> Tuple[Optional[Dict[str, Tuple[Any, str]]], str]:
        if self.challenge is None:
            return None, "the challenge did not load"
        sig, error = self.call("get_solve_signature()", self.challenge.get_solve_signature)
        if error:
            return None, error
        if not isinstance(sig, dict) or not all(
                isinstance(v, tuple) and len(v) == 2 for v in sig.values()):
            return None, ("get_solve_signature() must return a dict: name -> (ctypes type, "
                          "'in' | 'out' | 'inout')")
        return sig, ""

    @property
    def signature(self) -> Optional[Dict[str, Tuple[Any, str]]]:
        return self._signature[0]

    @property
    def directions(self) -> Dict[str, str]:
        return {name: d for name, (_, d) in (self.signature or {}).items()}

    # -- generated cases ----------------------------------------------------------------------
    def generate(self, device: torch.device, performance: bool = True) -> Generated:
        """Every generator's output on ``device`` (errors kept per generator), each called the
        way the grader calls it (grading seed 0, torch's global generator seeded for each)."""
        out = Generated()
        challenge = self.challenge
        if challenge is None:
            out.errors = {g: "the challenge did not load" for g in GENERATORS}
            return out

        def seeded(make):
            return with_seed(challenge, GRADING_SEED, make)
        saved = challenge.device
        challenge.device = torch.device(device)
        try:
            out.example, err = self.call("generate_example_test()", seeded,
                                         challenge.generate_example_test)
            if err:
                out.errors["generate_example_test"] = err
            functional, err = self.call("generate_functional_test()", seeded,
                                        challenge.generate_functional_test)
            if err:
                out.errors["generate_functional_test"] = err
            elif not isinstance(functional, (list, tuple)) or not functional:
                out.errors["generate_functional_test"] = (
                    "generate_functional_test() must return a non-empty list of cases")
            else:
                out.functional = list(functional)
            if performance:
                out.performance, err = self.call("generate_performance_test()", seeded,
                                                 challenge.generate_performance_test)
                if err:
                    out.errors["generate_performance_test"] = err
        finally:
            challenge.device = saved
        for label, case in out.labelled():
            if not isinstance(case, dict):
                out.errors.setdefault(label, f"the {label} is a {type(case).__name__}, not a "
                                             f"dict of parameter name -> tensor or number")
        if any(not isinstance(c, dict) for _, c in out.labelled()):
            out.example = out.example if isinstance(out.example, dict) else None
            out.functional = [c for c in out.functional if isinstance(c, dict)]
            out.performance = out.performance if isinstance(out.performance, dict) else None
        return out

    @cached_property
    def meta(self) -> Generated:
        """The cases on PyTorch's "meta" device: shapes and dtypes without memory or data.
        Proves the generators follow ``self.device``, and sizes the performance case cheaply."""
        return self.generate(torch.device("meta"))

    @cached_property
    def meta_works(self) -> bool:
        return not self.meta.errors

    @cached_property
    def performance_bytes(self) -> Optional[int]:
        """Bytes of the performance case's tensors (measured on "meta" when possible)."""
        if self.meta_works and self.meta.performance is not None:
            return case_bytes(self.meta.performance)
        return None

    @cached_property
    def performance_fits(self) -> bool:
        size = self.performance_bytes
        return size is None or MEMORY_FACTOR * size <= MEMORY_BUDGET_BYTES

    @cached_property
    def cases(self) -> Generated:
        """The cases on the validation device. The performance case is left out when it does
        not fit the memory budget (the ``performance`` check reports that)."""
        generated = self.generate(self.device, performance=self.performance_fits)
        if not self.performance_fits:
            generated.notes.append("the performance case was not generated: it exceeds the "
                                   "memory budget")
        return generated

    # -- the reference ------------------------------------------------------------------------
    def run_reference(self, label: str, case: Case) -> ReferenceRun:
        run = ReferenceRun(label)
        directions = self.directions
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        for name, tensor in tensors_of(args).items():
            if directions.get(name) == "out":
                fill_initial_(tensor, promised_initial(case[name]))
        before = {k: v.clone() for k, v in tensors_of(args).items()}
        _, run.error = self.call(f"reference_impl on the {label}", self.challenge.reference_impl,
                                 **args)
        if run.error:
            return run
        run.outputs = tensors_of(args)
        run.modified = [k for k, v in before.items() if not bitwise_equal(v, args[k])]
        return run

    @cached_property
    def reference_runs(self) -> List[ReferenceRun]:
        """The reference on the example and every functional case."""
        if self.challenge is None or self.signature is None:
            return []
        return [self.run_reference(label, case)
                for label, case in self.cases.labelled(performance=False)]

    # -- challenge.html -----------------------------------------------------------------------
    @cached_property
    def html(self) -> Optional[str]:
        path = self.info.path / "challenge.html"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
