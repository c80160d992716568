"""One grading, in its own process: ``python -m runner.judge.worker.jobrun`` reads a job (JSON) on
stdin and writes JSON lines on stdout: ``{"progress": "..."}`` as grading goes, then
``{"result": {...}}``.

The worker starts it with a scrubbed environment (no worker token, no database or broker
address), only its GPU visible, in a private working directory, so that neither a crash of
the grader nor an author's challenge code (which the trusted side imports to compute the
expected outputs) can reach the worker's credentials. The submission itself runs one level
further down, in the jailed child of :mod:`runner.sandbox`. If the worker dies,
this process notices (its parent changes), kills its children and exits.

It is a subreaper (what the submission orphans is re-parented here, not to init, so it is
killed with the rest), SIGTERM kills its whole tree and ends it at once, and once the result
is written it kills whatever is left and leaves with ``os._exit``: no Python or CUDA teardown
(which a GPU in a bad state can stall) stands between the result and the exit. The worker
reads the result as soon as it is written and never waits for this process without a bound.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, TextIO

from runner import languages, procs
from runner.catalog import challenge_info
from runner.judge.challenge_set import ChallengeSet
from runner.judge.worker.job_process import PARKED_SPEC

CUSTOM_FOLDER = "0_custom"


def kill_descendants(pid: int) -> None:
    """SIGKILL every descendant of ``pid`` (the sandbox's children lead their own groups and
    sessions: they are found through the process tree, and their groups are killed too)."""
    table = procs.process_table()
    tree = procs.descendants(pid, table)
    procs.kill_tree(pid, include_root=False,
                    groups=[table[p].pgid for p in tree if p in table and table[p].pgid != pid])


def _die_now(*_) -> None:
    """SIGTERM: kill everything below us and leave (no cleanup that could block)."""
    kill_descendants(os.getpid())
    _remove_parked_groups()
    os._exit(143)


def _remove_parked_groups() -> None:
    """The cgroups of parked jails not yet used (their processes were just killed; their
    folders are in this job's folder, which the worker removes)."""
    warm = sys.modules.get("runner.sandbox.warm")
    for parked in list(getattr(warm, "LIVE", ())):
        if parked.group is not None:
            parked.group.remove(seconds=1.0)


def _orphaned() -> None:
    """The worker is gone: nobody will read the result."""
    kill_descendants(os.getpid())
    _remove_parked_groups()
    os._exit(3)


def stage(job: Dict[str, Any], work: Path, challenge_dirs) -> tuple:
    """Write the submission (and an author's challenge) into ``work``; return
    (ChallengeInfo, solution path, language)."""
    language = languages.normalize(job["language"])
    solution = work / f"solution{languages.suffix(language)}"
    solution.write_text(job["content"], encoding="utf-8")
    if job.get("challengeCode"):
        folder = work / "challenge" / "custom" / CUSTOM_FOLDER
        folder.mkdir(parents=True)
        (folder / "challenge.py").write_text(job["challengeCode"], encoding="utf-8")
        info = challenge_info(folder)
    else:
        info = ChallengeSet([Path(d) for d in challenge_dirs]).find(job["challenge"])
    return info, solution, language


def park(device: str, sandbox: str):
    """A parked job process's start, before its job is known: torch and the grader imported
    and a parked jail of its own started (:mod:`runner.sandbox.warm`; None where none can be
    had: the grading then starts a cold one). No CUDA context yet, here or in the jail: the
    worker may park this process while another grading is timing on the GPU, and says when
    the GPU is free (:func:`wait_for_job`). Nothing here depends on a submission."""
    import torch   # lazy: after main() made this process a subreaper (as in run())

    from runner.sandbox import gpus, warm
    from runner.sandbox.limits import Limits

    gpu_minor = gpus.minor_of(torch.device(device))
    # the jail first: its interpreter, torch and Triton start while this process imports
    # the grader
    limits = Limits(sandbox=sandbox, require_cgroup=sandbox == "require")
    parked = warm.start_quietly(device, limits, gpu_minor, preload=["triton"], gpu_warm=False,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    import runner.grader.grade  # noqa: F401 - the grader, the plan, the languages

    return parked


def wait_for_job(device: str, parked) -> Dict[str, Any]:
    """A parked job process's job. Lines on stdin: ``gpu`` (the GPU is free: make this
    process's CUDA context and have the jail make its own), then ``go`` (the spec is in this
    job's folder). Anything else, or the end of stdin: discarded before any job."""
    while True:
        line = sys.stdin.readline().strip()
        if line == "gpu":
            if parked is not None:
                parked.warm_gpu()
            if device.startswith("cuda"):
                import torch   # loaded by park() already: only the name is bound here

                torch.empty(1, device=device)   # this process's context (the reference runs here)
            continue
        if line != "go":
            kill_descendants(os.getpid())
            _remove_parked_groups()
            os._exit(0)
        path = Path(PARKED_SPEC)
        spec = json.loads(path.read_text())
        path.unlink()
        return spec


def run(spec: Dict[str, Any], out: TextIO, parked=None) -> Dict[str, Any]:
    # lazy: torch (seconds) loads only after main() made this process a subreaper and set its
    # SIGTERM handler, so that a job stopped while it starts still takes its tree with it
    import torch

    from runner.grader.grade import grade_safely
    from runner.grader.options import GradeOptions
    from runner.sandbox.limits import Limits

    job = spec["job"]

    def emit(kind: str, value: Any) -> None:
        out.write(json.dumps({kind: value}, default=str) + "\n")
        out.flush()

    with tempfile.TemporaryDirectory(prefix="judge-job-", ignore_cleanup_errors=True) as tmp:
        info, solution, language = stage(job, Path(tmp), spec.get("challengeDirs") or [])
        limits = Limits(timeout_s=float(spec["timeLimitSeconds"]),
                        host_memory_bytes=int(spec["hostMemoryBytes"]),
                        sandbox=spec.get("sandbox", "require"),
                        require_cgroup=spec.get("sandbox", "require") == "require")
        options = GradeOptions(action="submit" if job["action"] == "profile" else job["action"],
                               profile=job["action"] == "profile",
                               device=torch.device(spec["device"]),
                               seed=int(job["seed"]), progress=lambda m: emit("progress", m),
                               limits=limits, parked=parked)
        if spec.get("timeBudgetSeconds"):
            options.time_budget_s = float(spec["timeBudgetSeconds"])
        result = grade_safely(info, solution, language, options).to_dict()
        result["action"] = job["action"]          # "profile" runs as a submit
    # the challenge set's id: unique where two roots hold the same folder name
    result["challenge"] = "custom" if job.get("challengeCode") else job["challenge"]
    emit("result", result)
    return result


def main() -> int:
    # ``python -m`` put this job's folder (the working directory) first on sys.path; the jail
    # shows every sys.path folder read-only, and this one holds the job's files: never
    here = Path.cwd().resolve()
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != here]
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                       # anything the grader prints goes to stderr
    procs.become_subreaper()
    signal.signal(signal.SIGTERM, _die_now)
    procs.when_parent_dies(os.getppid(), _orphaned)
    parked = None
    if len(sys.argv) >= 4 and sys.argv[1] == "--parked":
        parked = park(sys.argv[2], sys.argv[3])
        spec = wait_for_job(sys.argv[2], parked)
    else:
        spec = json.loads(sys.stdin.read())
    run(spec, out, parked)
    out.close()
    kill_descendants(os.getpid())       # nothing of the grading outlives it
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
