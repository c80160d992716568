"""One check's outcome, and a whole validation's report (text for people, JSON for tools)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


@dataclass
class CheckResult:
    name: str
    status: str            # PASS, FAIL, WARN (this project's stricter rule, on a foreign
                           # folder: reported, not failed) or SKIP
    message: str
    hint: str = ""         # how to fix it (for a failure or warning), or why it was skipped

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def passed(name: str, message: str) -> CheckResult:
    return CheckResult(name, PASS, message)


def failed(name: str, message: str, hint: str) -> CheckResult:
    return CheckResult(name, FAIL, message, hint)


def skipped(name: str, message: str) -> CheckResult:
    return CheckResult(name, SKIP, message)


def stricter(format: str, name: str, message: str, hint: str) -> CheckResult:
    """A breach of one of this project's stricter rules (beyond LeetGPU's own): a failure for
    this repository's format, a warning for a folder in LeetGPU's format."""
    if format == "leetgpu":
        return CheckResult(name, WARN, message, hint + " (this project's stricter rule: a "
                                                       "warning for a LeetGPU-format folder)")
    return CheckResult(name, FAIL, message, hint)


@dataclass
class ValidationReport:
    challenge: str
    path: str
    format: str                      # "repo" or "leetgpu"
    device: str
    checks: List[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def counts(self) -> Dict[str, int]:
        return {status: sum(c.status == status for c in self.checks)
                for status in (PASS, FAIL, WARN, SKIP)}

    def to_dict(self) -> Dict[str, Any]:
        return {"challenge": self.challenge, "path": self.path, "format": self.format,
                "device": self.device, "passed": self.ok, "counts": self.counts(),
                "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self) -> str:
        width = max([len(c.name) for c in self.checks] + [8])
        lines = [f"Validating {self.challenge} ({self.path}, {self.format} format, "
                 f"device: {self.device})"]
        for check in self.checks:
            lines.append(f"  {check.status.upper():4}  {check.name:<{width}}  {check.message}")
            if check.hint:
                label = "fix" if check.status in (FAIL, WARN) else "note"
                for k, hint_line in enumerate(check.hint.splitlines()):
                    lines.append(f"        {' ' * width}  {label + ':' if k == 0 else '    '} "
                                 f"{hint_line}")
        counts = self.counts()
        verdict = "PASSED" if self.ok else "FAILED"
        lines.append(f"{verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, "
                     f"{counts[WARN]} warned, {counts[SKIP]} skipped")
        return "\n".join(lines)
