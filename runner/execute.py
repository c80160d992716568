"""The submission side of a grading: load the solution, call it on every case, time it.

This runs wherever the untrusted code runs (a sandboxed child process, or the grading process
itself with ``--no-sandbox``). It never computes or sees expected outputs: it regenerates the
test inputs from the job's seed, runs ``solve`` and reports the outputs, which the parent
compares (see :mod:`runner.grade`). Messages go through a :class:`Channel`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import torch

from runner import languages
from runner.buffers import PreparedCall, directions_of, prepare_call
from runner.challenge import ChallengeBase, find_challenge, load_challenge
from runner.errors import (MemoryLimitExceeded, SubmissionError, TamperingDetected,
                           UserRuntimeError)
from runner.timing import L2Flusher, time_cuda, timing_tampering

FRESH_SEED_OFFSET = 7919      # the seed of the post-timing "fresh inputs" check
COPY_SEED_OFFSET = 104_729    # seeds of the rotated performance copies


@dataclass
class Job:
    """Everything the submission side needs; JSON-serializable."""

    challenge_path: str
    solution_path: str
    language: str
    device: str = "cpu"
    action: str = "run"
    seed: int = 0
    perf_copies: int = 1
    time_budget_s: float = 3.0
    nvcc_flags: List[str] = field(default_factory=list)
    gpu_memory_fraction: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class Channel(Protocol):
    def progress(self, message: str) -> None: ...

    def send(self, kind: str, payload: Dict[str, Any],
             tensors: Optional[Dict[str, torch.Tensor]] = None) -> None: ...


# -- test cases: the same on both sides, from the challenge and the seed ---------------------

def with_seed(challenge: ChallengeBase, seed: int, make: Callable[[], Any]) -> Any:
    """Generate under grading seed ``seed`` (also seeding torch's global RNG, for challenges
    that draw from it directly)."""
    saved = getattr(challenge, "seed", 0)
    challenge.seed = seed
    try:
        torch.manual_seed(seed)
        return make()
    finally:
        challenge.seed = saved


def test_cases(challenge: ChallengeBase, action: str, seed: int) -> List[Tuple[str, Dict[str, Any]]]:
    if action == "run":
        return [("example", with_seed(challenge, seed, challenge.generate_example_test))]
    cases = with_seed(challenge, seed, challenge.generate_functional_test)
    return [(f"test {k + 1}", case) for k, case in enumerate(cases)]


def performance_case(challenge: ChallengeBase, seed: int) -> Dict[str, Any]:
    return with_seed(challenge, seed, challenge.generate_performance_test)


def copy_seed(seed: int, k: int) -> int:
    return seed if k == 0 else seed + COPY_SEED_OFFSET + k


# -- running --------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def classify_runtime_error(exc: BaseException) -> SubmissionError:
    text = str(exc).strip()
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in text:
        return MemoryLimitExceeded(f"out of memory: {text.splitlines()[0] if text else type(exc).__name__}")
    return UserRuntimeError(f"a CUDA error occurred in your kernels: {text}")


def call_and_sync(solve_call, prepared: PreparedCall, device: torch.device) -> None:
    solve_call(prepared.args)
    try:
        synchronize(device)
    except (RuntimeError, MemoryError) as exc:
        raise classify_runtime_error(exc)


def report_call(channel: Channel, kind: str, payload: Dict[str, Any], prepared: PreparedCall,
                directions: Dict[str, str]) -> None:
    outputs = {name: prepared.outputs[name].written().detach().to("cpu").clone()
               for name, d in directions.items() if d != "in"}
    channel.send(kind, {**payload, "modified_inputs": prepared.modified_inputs(),
                        "guard_damage": prepared.guard_damage()}, outputs)


def run_cases(challenge, solve_call, job: Job, channel: Channel, device: torch.device) -> None:
    directions = directions_of(challenge.get_solve_signature())
    cases = test_cases(challenge, job.action, job.seed)
    for k, (name, case) in enumerate(cases):
        channel.progress(f"running {name} ({k + 1} of {len(cases)})")
        prepared = prepare_call(case, directions)
        call_and_sync(solve_call, prepared, device)
        report_call(channel, "case", {"index": k, "name": name}, prepared, directions)


def run_performance(challenge, solve_call, job: Job, channel: Channel, device: torch.device) -> None:
    directions = directions_of(challenge.get_solve_signature())
    channel.progress("running the performance test")
    copies = [prepare_call(performance_case(challenge, copy_seed(job.seed, 0)), directions)]
    call_and_sync(solve_call, copies[0], device)
    report_call(channel, "perf_first", {}, copies[0], directions)
    if device.type == "cuda":
        for k in range(1, job.perf_copies):
            copies.append(prepare_call(performance_case(challenge, copy_seed(job.seed, k)), directions))
        channel.progress("timing")

        def before(i: int) -> None:
            copies[i % len(copies)].poison(directions)

        timing = time_cuda(lambda i: solve_call(copies[i % len(copies)].args), before=before,
                           budget_s=job.time_budget_s, flusher=L2Flusher(device))
        try:
            synchronize(device)
        except (RuntimeError, MemoryError) as exc:
            raise classify_runtime_error(exc)
        tampered = timing_tampering()
        if tampered:
            raise TamperingDetected(f"the timing functions were changed during the run "
                                    f"({tampered}); solutions must not patch the harness")
        channel.send("timing", timing.to_dict())
        for k, prepared in enumerate(copies):
            report_call(channel, "perf_copy", {"index": k}, prepared, directions)
    # fresh random inputs written into the same buffers: answers cached by shape, by pointer
    # or from an earlier call now fail
    fresh = performance_case(challenge, job.seed + FRESH_SEED_OFFSET)
    target = copies[0]
    target.refill(fresh, directions)
    call_and_sync(solve_call, target, device)
    report_call(channel, "perf_fresh", {}, target, directions)


def execute(job: Job, channel: Channel) -> None:
    """Run the submission side of ``job``, reporting through ``channel``; a problem in the
    submission is sent as an ``error`` message (our own bugs propagate)."""
    device = torch.device(job.device)
    if device.type == "cuda":
        device = torch.device("cuda", device.index or 0)
        torch.cuda.set_device(device)
        if job.gpu_memory_fraction:
            torch.cuda.set_per_process_memory_fraction(job.gpu_memory_fraction, device)
    challenge = load_challenge(find_challenge(job.challenge_path), device)
    challenge.seed = job.seed
    try:
        channel.progress("compiling" if job.language == "cuda" else "loading")
        started = time.perf_counter()
        solve_call = languages.backend(job.language).load(
            _path(job.solution_path), challenge, device, extra_flags=job.nvcc_flags)
        channel.send("loaded", {"seconds": time.perf_counter() - started})
        run_cases(challenge, solve_call, job, channel, device)
        if job.action == "submit":
            channel.send("cases_done", {})
            run_performance(challenge, solve_call, job, channel, device)
    except SubmissionError as exc:
        channel.send("error", {"verdict": exc.verdict, "message": exc.message,
                               "details": exc.details})
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        err = classify_runtime_error(exc)
        channel.send("error", {"verdict": err.verdict, "message": err.message, "details": ""})
    channel.send("done", {})


def _path(text: str):
    from pathlib import Path
    return Path(text)


class MemoryChannel:
    """Collects messages in memory: used when the submission runs in the grading process."""

    def __init__(self, progress: Callable[[str], None] = lambda m: None):
        self.messages: List[Tuple[str, Dict[str, Any], Dict[str, torch.Tensor]]] = []
        self._progress = progress

    def progress(self, message: str) -> None:
        self._progress(message)

    def send(self, kind, payload, tensors=None) -> None:
        self.messages.append((kind, payload, dict(tensors or {})))
