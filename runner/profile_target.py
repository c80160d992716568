"""``python -m runner.profile_target SPEC``: the process Nsight Compute profiles.

Started by :func:`runner.profiling.run_ncu` inside the grading's jail (the same filter, limits
and scratch space): it loads the challenge and the solution as the grading did, makes the
performance case, calls ``solve`` once to warm up (Triton's build, CUDA's module load), then
once between ``cudaProfilerStart`` and ``cudaProfilerStop`` (ncu runs with
``--profile-from-start off``, so only that call's kernels are profiled). Its stdout is
discarded and its stderr kept in the scratch folder, whose tail the child adds to ncu's
messages when ncu fails; only ncu's CSV is parsed, and only by the grader.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    # its output: nothing on ncu's stdout; errors to a file the child may quote (bounded)
    devnull = os.open(os.devnull, os.O_WRONLY)
    errors = os.open(spec_path.with_name("target.err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
    os.dup2(devnull, 1)
    os.dup2(errors, 2)
    # lazy: after stdout and stderr are redirected (torch and the solution may print on import)
    import torch

    from runner import languages
    from runner.buffers import directions_of, prepare_call
    from runner.cases import copy_seed, performance_case
    from runner.catalog import find_challenge
    from runner.loading import load_challenge
    from runner.protocol import Job

    job = Job(**spec)
    cuda = job.device.startswith("cuda")         # the CPU only in tests
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    challenge = load_challenge(find_challenge(job.challenge_path), device)
    challenge.seed = job.seed
    solve_call = languages.backend(job.language).load(
        Path(job.solution_path), challenge, device, extra_flags=job.nvcc_flags,
        library_path=job.library_path, build_info=job.build_info)
    directions = directions_of(challenge.get_solve_signature())
    prepared = prepare_call(performance_case(challenge, copy_seed(job.seed, 0)), directions)
    solve_call(prepared.args)
    if not cuda:
        return 0
    torch.cuda.synchronize(device)
    torch.cuda.profiler.start()
    solve_call(prepared.args)
    torch.cuda.synchronize(device)
    torch.cuda.profiler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
