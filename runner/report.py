"""One Result type for every grading, rendered for people or as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from runner.profile_text import render_profile
from runner.protocol import STATUS_OF_VERDICT as _STATUS
from runner.protocol import Verdict

STATUS_OF_VERDICT = {v.value: status for v, status in _STATUS.items()}


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (a NaN output, an infinite error) as None: strict
    JSON, which browsers, httpx (``allow_nan=False``) and Starlette's responses require."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass
class TestReport:
    name: str
    passed: bool
    params: Dict[str, Any] = field(default_factory=dict)
    max_abs_error: Optional[float] = None
    max_rel_error: Optional[float] = None
    mismatches: int = 0
    total: int = 0
    worst: Optional[Dict[str, Any]] = None     # the element furthest past its tolerance
    examples: List[Dict[str, Any]] = field(default_factory=list)   # the worst few, worst first
    message: str = ""
    largest: Optional[Dict[str, Any]] = None   # the element of the largest abs err


@dataclass
class Result:
    verdict: str
    message: str = ""
    challenge: str = ""
    language: str = ""
    action: str = ""
    device: str = ""
    tests: List[TestReport] = field(default_factory=list)
    performance: Optional[Dict[str, Any]] = None
    details: str = ""            # compiler output or the user's traceback
    notes: List[str] = field(default_factory=list)
    seed: Optional[int] = None   # the grading seed, for reproduction
    logs: str = ""               # the submission's captured stdout/stderr, bounded
    profile: Optional[Dict[str, Any]] = None   # --action profile: docs/profile.md (never
    #                                            part of the verdict)

    @property
    def status(self) -> str:
        return STATUS_OF_VERDICT.get(self.verdict, "error")

    @property
    def accepted(self) -> bool:
        return self.verdict == Verdict.ACCEPTED

    def to_dict(self) -> Dict[str, Any]:
        """Strict JSON data: non-finite numbers are None (the text report still shows them)."""
        data = asdict(self)
        if data.get("profile") is None:      # only --action profile has one
            data.pop("profile", None)
        return json_safe({"status": self.status, **data})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Result":
        data = {k: v for k, v in data.items() if k != "status"}
        data["tests"] = [TestReport(**t) for t in data.get("tests", [])]
        return cls(**data)


def _fmt_params(params: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


SHOWN_HEAD_LINES = 20     # of the solution's output in the text report (all of it is in --json)
SHOWN_TAIL_LINES = 10


def cut_output(text: str, head: int = SHOWN_HEAD_LINES, tail: int = SHOWN_TAIL_LINES) -> str:
    """``text``'s first ``head`` and last ``tail`` lines, with a line saying how much was cut."""
    lines = text.splitlines()
    if len(lines) <= head + tail + 1:
        return text
    cut = len(lines) - head - tail
    cut_bytes = len("\n".join(lines[head:len(lines) - tail]).encode())
    return "\n".join(lines[:head] + [f"[... {cut:,} lines ({cut_bytes:,} bytes) of your output cut "
                                     f"here; --json has all that was kept]"] + lines[-tail:])


def render_text(result: Result) -> str:
    """The human-readable report; the verdict is its last line, after the solution's output."""
    lines = [f"Challenge: {result.challenge}   language: {result.language}   "
             f"device: {result.device}   action: {result.action}"]
    for note in result.notes:
        lines.append(f"note: {note}")
    if result.logs:
        lines.append("Output of your solution:\n" + cut_output(result.logs))
    if result.details:
        lines.append(result.details)
    for test in result.tests:
        mark = "PASS" if test.passed else "FAIL"
        err = (f"  max abs err {test.max_abs_error:.3g}" if test.max_abs_error is not None else "")
        lines.append(f"  [{mark}] {test.name} ({_fmt_params(test.params)}){err}")
        if test.message:      # a failure's, or how a passing test was accepted
            for msg_line in test.message.splitlines():
                lines.append(f"         {msg_line}")
    if result.performance:
        lines.append(render_performance(result.performance))
    if result.profile:
        lines.append(render_profile(result.profile))
    verdict = result.verdict.upper().replace("_", " ")
    if result.verdict == "compiled":
        verdict = "COMPILED ONLY, NOTHING CHECKED"
    message = " ".join(result.message.split()) if result.message else ""
    lines.append(f"Verdict: {verdict}" + (f": {message}" if message else ""))
    return "\n".join(lines)


def render_performance(perf: Dict[str, Any]) -> str:
    if perf.get("run") is False:
        return f"  Performance: {perf.get('reason', 'not run')}"
    if not perf.get("timed"):
        return f"  Performance: not timed ({perf.get('reason', 'no GPU')})"
    sol = perf["solution"]
    out = [f"  Performance ({_fmt_params(perf.get('params', {}))}):",
           f"    your solve: median {sol['median_ms'] * 1e3:.1f} us  (mean {sol['mean_ms'] * 1e3:.1f}, "
           f"min {sol['min_ms'] * 1e3:.1f}, std {sol['std_ms'] * 1e3:.1f} us, {sol['runs']} runs, "
           f"timing: {sol['mode']})",
           f"    host time per call: {sol.get('host_us', 0):.1f} us "
           + ("(hidden: launches queue behind a spin, as under CUDA graphs)"
              if sol.get("launch_cover", True) else "(billed: your solve waits for the GPU)")]
    clock = perf.get("clock") or {}
    if clock.get("per_call_ms") is not None:
        agree = ("agrees" if clock.get("agrees")
                 else "does not corroborate the in-sandbox time: see the note")
        out.append(f"    grader's clock: {clock['per_call_ms'] * 1e3:.1f} us per call over "
                   f"{clock['calls']} calls on changed inputs ({agree})")
    for note in perf.get("notes", []):
        out.append(f"    note: {note}")
    ref = perf.get("reference")
    if ref:
        out.append(f"    reference:  median {ref['median_ms'] * 1e3:.1f} us  "
                   f"-> speedup {perf['speedup']:.2f}x")
    if perf.get("gbps") is not None:
        frac = perf.get("bandwidth_fraction")
        tail = f" ({100 * frac:.0f}% of {perf['peak_source']})" if frac else ""
        out.append(f"    achieved: {perf['gbps']:.0f} GB/s{tail}"
                   + (f", {perf['tflops']:.3f} TFLOP/s" if perf.get("tflops") else ""))
        if perf.get("floor_fraction"):
            out.append(f"    {100 * perf['floor_fraction']:.0f}% of the measured floor "
                       f"({perf['floor_us']:.1f} us: {perf.get('floor_source', '')})")
        if perf.get("ceiling_gbps"):
            out.append(f"    the device's measured ceiling: {perf['ceiling_gbps']:,.0f} GB/s "
                       f"({perf.get('ceiling_source', '')})")
    return "\n".join(out)
