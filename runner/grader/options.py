"""What a caller asks of one grading (:class:`GradeOptions`: the CLI's flags, the judge's job),
and what of it the submission side is told (:func:`job_for`: the inputs' recipe, never an
expected output)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch

from runner import environment
from runner.catalog import ChallengeInfo
from runner.policy import BURST_S, CHECKED_RUNS, TIME_BUDGET_S
from runner.protocol import Job
from runner.sandbox.limits import Limits


@dataclass
class GradeOptions:
    """Everything a caller asks of one grading. The child's :class:`runner.protocol.Job` is
    derived from it (:func:`job_for`); ``limits`` is what the sandbox enforces."""

    action: str = "run"                   # "run": the example test; "submit": all + timing
    device: torch.device = torch.device("cpu")
    seed: int = 0                         # grading seed; the example test ignores it
    time_budget_s: float = TIME_BUDGET_S  # per timed implementation
    time_reference: bool = True
    nvcc_flags: List[str] = field(default_factory=list)   # extra flags for CUDA solutions
    isolate: bool = True                  # run the submission in a sandboxed child process
    limits: Limits = field(default_factory=Limits)
    progress: Callable[[str], None] = field(default=lambda message: None)
    time_on_cpu: bool = False             # time on the host clock without a GPU (tests)
    burst_s: float = BURST_S              # length of the burst the parent times itself
    checked_runs: int = CHECKED_RUNS      # timed runs (and burst calls) whose outputs are checked
    profile: bool = False                 # --action profile (with action "submit"): the
    #                                       tests, then one profiled call instead of the timing
    # a pre-warmed jail (runner.sandbox.warm.ParkedJail) for this grading, used once and
    # destroyed by it (the judge's job process starts one before its job comes); without one,
    # warm_start starts the jail first thing, so that it starts while the plan is made and
    # the solution is built
    parked: Any = None
    warm_start: bool = field(default_factory=environment.warm_start)


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
