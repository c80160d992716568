"""Grading a submission: the entry point (:func:`grade`), its options, and where the
submission side runs.

The plan (the cases and their expected outputs) is :mod:`runner.plan`; the conversation with the
submission side and the verdict are :class:`runner.grading.Grading`. The submission side
(:mod:`runner.execute`) runs in a jailed child process by default (:mod:`runner.sandbox`), or
in this process with ``isolate=False``.
"""

from __future__ import annotations

import os
import shutil
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch

from runner import devices, languages, protocol
from runner.catalog import ChallengeInfo
from runner.errors import SubmissionError
from runner.execute import MemoryChannel, execute
from runner.grading import Grading
from runner.languages import cpu_cuda, cuda_build
from runner.loading import load_challenge
from runner.plan import make_plan
from runner.protocol import Job, ProtocolViolation, Verdict
from runner.report import Result
from runner.sandbox.jail import gpu_minor_of
from runner.sandbox import warm
from runner.sandbox.parent import Limits, SandboxUnavailable, run_in_child
from runner.sandbox.watch import ChildOutcome


@dataclass
class GradeOptions:
    """Everything a caller asks of one grading. The child's :class:`runner.protocol.Job` is
    derived from it (:func:`job_for`); ``limits`` is what the sandbox enforces."""

    action: str = "run"                   # "run": the example test; "submit": all + timing
    device: torch.device = torch.device("cpu")
    seed: int = 0                         # grading seed; the example test ignores it
    time_budget_s: float = 3.0            # per timed implementation
    time_reference: bool = True
    nvcc_flags: List[str] = field(default_factory=list)   # extra flags for CUDA solutions
    isolate: bool = True                  # run the submission in a sandboxed child process
    limits: Limits = field(default_factory=Limits)
    progress: Callable[[str], None] = field(default=lambda message: None)
    time_on_cpu: bool = False             # time on the host clock without a GPU (tests)
    burst_s: float = 1.0                  # length of the burst the parent times itself
    checked_runs: int = 4                 # timed runs (and burst calls) whose outputs are checked
    profile: bool = False                 # --action profile (with action "submit"): the
    #                                       tests, then one profiled call instead of the timing
    # a pre-warmed jail (runner.sandbox.warm.ParkedJail) for this grading, used once and
    # destroyed by it (the judge's job process starts one before its job comes); without one,
    # warm_start starts the jail first thing, so that it starts while the plan is made and
    # the solution is built
    parked: Any = None
    warm_start: bool = field(default_factory=lambda: os.environ.get("GRADER_WARM_START") != "0")


def gpu_memory_fraction(options: GradeOptions) -> Optional[float]:
    """The share of the device torch's allocator may use in the child (``limits.gpu_memory_bytes``)."""
    limit = options.limits.gpu_memory_bytes
    if not limit or options.device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(options.device).total_memory
    return max(0.01, min(1.0, limit / total))


def job_for(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions,
            perf_copies: int, performance: bool = True) -> Job:
    """What the submission side is told: the inputs' recipe, never an expected output."""
    return Job(challenge_path=str(info.path), solution_path=str(solution), language=language,
               device=str(options.device), action=options.action, seed=options.seed,
               perf_copies=perf_copies, nvcc_flags=list(options.nvcc_flags),
               gpu_memory_fraction=gpu_memory_fraction(options), performance=performance)


def grade_safely(info: ChallengeInfo, solution: Path, language: str,
                 options: GradeOptions) -> Result:
    """:func:`grade`, with a bug of ours reported as ``internal_error`` and its full traceback."""
    try:
        return grade(info, solution, language, options)
    except SandboxUnavailable as exc:
        return Result(verdict=Verdict.INTERNAL_ERROR.value, challenge=info.display,
                      language=language, action=options.action,
                      device=devices.describe(options.device), seed=options.seed,
                      message=f"grading needs a sandbox and none can be made here: {exc}")
    except Exception:  # noqa: BLE001 - anything not classified above is our bug
        return Result(verdict=Verdict.INTERNAL_ERROR.value, challenge=info.display,
                      language=language, action=options.action,
                      device=devices.describe(options.device),
                      message="the grader failed (a bug in the harness, not in your solution); "
                              "please report it with the details below",
                      details=traceback.format_exc(), seed=options.seed)


def grade(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions) -> Result:
    parked, options.parked = options.parked, None       # one grading's, whatever happens
    if parked is None and options.warm_start and options.isolate:
        parked = warm.start_quietly(str(options.device), options.limits,
                                    _gpu_minor(options.device),
                                    preload=[language] if language in ("triton", "cupy") else [],
                                    challenge_dir=info.path, solution=Path(solution))
    try:
        return _grade(info, solution, language, options, parked)
    finally:
        if parked is not None:
            parked.discard()


def _grade(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions,
           parked) -> Result:
    device = options.device
    challenge = load_challenge(info, device)
    challenge.seed = options.seed
    result = Result(verdict=Verdict.ACCEPTED.value, challenge=info.display, language=language,
                    action=options.action, device=devices.describe(device), seed=options.seed)
    if device.type == "cpu":
        result.notes.append("no GPU: grading on the CPU"
                            + (" (Triton runs under its interpreter)" if language == "triton" else ""))
    result.notes += languages.binding_notes(Path(solution), language, challenge)
    result.notes += cpu_cuda.note_for(Path(solution), language, device)
    solution = Path(solution).resolve()
    build: Optional[_Background] = None
    if language == "cuda":
        # built here, on the trusted side (nvcc in a jail of its own), while the plan is made
        # (and the jail starts); the child gets a read-only copy in a folder of its own
        options.progress("compiling")
        build = _Background(build_cuda, challenge, solution, options)
    plan = make_plan(challenge, options.action, options.seed, device,
                     interpreted=language == "triton" and device.type == "cpu")
    job = job_for(info, solution, language, options, plan.perf_copies, plan.performance)
    compile_only = language == "cuda" and device.type != "cuda"
    extra_binds: List[Path] = []
    if options.profile:       # runner/profile_grading.py; ncu's install shown in the jail
        from runner.profile_grading import profile_grading
        grading, extra_binds = profile_grading(challenge, plan, options, compile_only)
    else:
        grading = Grading(challenge, plan, options, compile_only=compile_only)
    library_dir: Optional[Path] = None
    if build is not None:
        try:
            built = build.result()
        except SubmissionError as exc:
            result.verdict, result.message, result.details = exc.verdict, exc.message, exc.details
            return result
        result.notes += built.notes
        job.library_path = str(cuda_build.grading_copy(built.library))
        job.build_info = built.info()
        library_dir = Path(job.library_path).parent
    try:
        outcome: Optional[ChildOutcome] = None
        if options.isolate and parked is not None and not extra_binds:
            try:
                outcome = parked.grade(job, info.path, solution,
                                       Path(job.library_path) if job.library_path else None,
                                       options.limits, grading, options.progress)
            except warm.WarmUnusable:
                outcome = None           # nothing of the job reached it: a cold jail instead
        if outcome is None and options.isolate:
            outcome = run_in_child(job, options.limits, grading, options.progress,
                                   read_only=[solution.parent,
                                              *([library_dir] if library_dir else []),
                                              *extra_binds],
                                   gpu_minor=_gpu_minor(device))
        elif outcome is None:
            outcome = run_in_process(job, grading, options.progress)
    except KeyboardInterrupt as exc:
        exc.tests = list(grading.tests)       # what had run, for the interrupted report
        raise
    finally:
        if library_dir is not None:
            shutil.rmtree(library_dir, ignore_errors=True)
    result.logs = outcome.logs
    result.notes += outcome.notes
    return grading.verdict(outcome, result)


class _Background:
    """``fn(*args)`` in a thread of its own; :meth:`result` waits for it and returns or raises
    what it did (a jailed nvcc is bounded by its own time limit)."""

    def __init__(self, fn, *args):
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                        name="grading-build")
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def build_cuda(challenge, solution: Path, options: GradeOptions) -> cuda_build.Built:
    """The solution's library in the trusted cache (SubmissionError: compile_error and the
    like, before any child starts)."""
    device = options.device
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    sandbox = options.limits.sandbox if options.isolate else "auto"
    try:
        return cuda_build.build(solution, capability, getattr(challenge, "nvcc_flags", None) or (),
                                options.nvcc_flags, sandbox=sandbox)
    except cuda_build.BuildUnavailable as exc:
        raise SandboxUnavailable(f"the CUDA build cannot be jailed: {exc}") from None


def run_in_process(job: Job, grading: Grading, progress: Callable[[str], None]) -> ChildOutcome:
    """The submission side in this process (``--no-sandbox``), talking to ``grading`` directly."""

    channel = MemoryChannel(grading, progress)
    try:
        channel.send(protocol.SANDBOX, {"notes": []})
        execute(job, channel)
        outcome = ChildOutcome(finished=grading.transcript.done)
    except ProtocolViolation as exc:
        outcome = ChildOutcome(verdict=Verdict.REJECTED.value,
                               message=f"{protocol.INTERFERENCE}: {exc}")
    outcome.notes.append("not isolated: --no-sandbox (the solution ran in this process)")
    return outcome


def _gpu_minor(device: torch.device) -> Optional[int]:
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device.index or 0)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return gpu_minor_of("")
    domain = getattr(props, "pci_domain_id", 0)
    dev = getattr(props, "pci_device_id", 0)
    return gpu_minor_of(f"{domain:04x}:{bus:02x}:{dev:02x}.0")

