"""Grading a submission: the entry point (:func:`grade`, and :func:`grade_safely`, which the
CLI and the judge's job process call), and where the submission side runs.

What a caller asks is :mod:`runner.grader.options`; the plan (the cases and their expected
outputs) :mod:`runner.grader.plan`; the conversation with the submission side
:class:`runner.grader.conversation.Grading`; the verdict :func:`runner.grader.verdict.decide`.
The submission side (:mod:`runner.execute`) runs in a jailed child process by default
(:mod:`runner.sandbox`), or in this process with ``isolate=False``.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path
from typing import Callable, List, Optional

from runner import devices, languages, protocol
from runner.catalog import ChallengeInfo
from runner.errors import SubmissionError
from runner.execute import MemoryChannel, execute
from runner.grader.build import Background, build_cuda
from runner.grader.conversation import Grading
from runner.grader.options import GradeOptions, job_for
from runner.grader.plan import make_plan
from runner.grader.profile.grading import profile_grading
from runner.grader.verdict import Evidence, decide
from runner.languages import cpu_cuda, cuda_build
from runner.loading import load_challenge
from runner.protocol import Job, ProtocolViolation, Verdict
from runner.report import Result
from runner.sandbox import gpus, warm
from runner.sandbox.parent import SandboxUnavailable, run_in_child
from runner.sandbox.watch import PROTOCOL, Ending


def grade_safely(info: ChallengeInfo, solution: Path, language: str,
                 options: GradeOptions) -> Result:
    """:func:`grade`, with a bug of ours reported as ``internal_error`` and its full traceback."""
    try:
        return grade(info, solution, language, options)
    except SandboxUnavailable as exc:
        evidence = Evidence(action=options.action, no_sandbox=str(exc))
    except Exception:  # noqa: BLE001 - anything not classified above is our bug
        evidence = Evidence(action=options.action, harness_bug=traceback.format_exc())
    return decide(evidence, Result(verdict=Verdict.INTERNAL_ERROR.value, challenge=info.display,
                                   language=language, action=options.action,
                                   device=devices.describe(options.device), seed=options.seed))


def grade(info: ChallengeInfo, solution: Path, language: str, options: GradeOptions) -> Result:
    parked, options.parked = options.parked, None       # one grading's, whatever happens
    if parked is None and options.warm_start and options.isolate:
        parked = warm.start_quietly(str(options.device), options.limits,
                                    gpus.minor_of(options.device),
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
    build: Optional[Background] = None
    if language == "cuda":
        # built here, on the trusted side (nvcc in a jail of its own), while the plan is made
        # (and the jail starts); the child gets a read-only copy in a folder of its own
        options.progress("compiling")
        build = Background(build_cuda, challenge, solution, options)
    plan = make_plan(challenge, options.action, options.seed, device,
                     interpreted=language == "triton" and device.type == "cpu")
    job = job_for(info, solution, language, options, plan.perf_copies, plan.performance)
    compile_only = language == "cuda" and device.type != "cuda"
    extra_binds: List[Path] = []
    if options.profile:       # runner/grader/profile/grading.py; ncu's install shown in the jail
        grading, extra_binds = profile_grading(challenge, plan, options, compile_only)
    else:
        grading = Grading(challenge, plan, options, compile_only=compile_only)
    library_dir: Optional[Path] = None
    if build is not None:
        try:
            built = build.result()
        except SubmissionError as exc:
            return decide(Evidence(action=options.action,
                                   build_error=(exc.verdict, exc.message, exc.details)), result)
        result.notes += built.notes
        job.library_path = str(cuda_build.grading_copy(built.library))
        job.build_info = built.info()
        library_dir = Path(job.library_path).parent
    try:
        ending: Optional[Ending] = None
        if options.isolate and parked is not None and not extra_binds:
            try:
                ending = parked.grade(job, info.path, solution,
                                       Path(job.library_path) if job.library_path else None,
                                       options.limits, grading, options.progress)
            except warm.WarmUnusable:
                ending = None            # nothing of the job reached it: a cold jail instead
        if ending is None and options.isolate:
            ending = run_in_child(job, options.limits, grading, options.progress,
                                   read_only=[solution.parent,
                                              *([library_dir] if library_dir else []),
                                              *extra_binds],
                                   gpu_minor=gpus.minor_of(device))
        elif ending is None:
            ending = run_in_process(job, grading, options.progress)
    except KeyboardInterrupt as exc:
        exc.tests = list(grading.tests)       # what had run, for the interrupted report
        raise
    finally:
        if library_dir is not None:
            shutil.rmtree(library_dir, ignore_errors=True)
    result.logs = ending.logs
    result.notes += ending.notes
    return grading.finish(decide(grading.evidence(ending), result))


def run_in_process(job: Job, grading: Grading, progress: Callable[[str], None]) -> Ending:
    """The submission side in this process (``--no-sandbox``), talking to ``grading`` directly."""

    channel = MemoryChannel(grading, progress)
    try:
        channel.send(protocol.SANDBOX, {"notes": []})
        execute(job, channel)
        ending = Ending(finished=grading.transcript.done)
    except ProtocolViolation as exc:
        ending = Ending(cause=PROTOCOL, violation=str(exc))
    ending.notes.append("not isolated: --no-sandbox (the solution ran in this process)")
    return ending
