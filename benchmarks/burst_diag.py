"""Where the time of the grader's burst goes, in one process (no sandbox): for a solution of
challenge 96, the host time to enqueue each call of a burst against its wall time, and the
grader's own measurement of each call's flush and perturbation.

    python benchmarks/burst_diag.py challenges/medium/96_int8_kv_cache_attention/reference/solution.cu
"""
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner import languages  # noqa: E402
from runner.buffers import directions_of, prepare_call  # noqa: E402
from runner.catalog import find_challenge  # noqa: E402
from runner.loading import load_challenge
from runner.cases import copy_seed, performance_case  # noqa: E402
from runner.execute import PerfBench  # noqa: E402

device = torch.device("cuda")
for solution in sys.argv[1:]:
    challenge = load_challenge(find_challenge("96"), device)
    directions = directions_of(challenge.get_solve_signature())
    solve = languages.backend(languages.detect(Path(solution))).load(Path(solution), challenge, device)
    cases = [performance_case(challenge, copy_seed(0, k)) for k in range(2)]
    initial = [{n: c[n].clone() for n, d in directions.items() if d != "in"} for c in cases]
    copies = [prepare_call(c, directions) for c in cases]
    bench = PerfBench(challenge, solve, copies, initial, directions, device, 2**30, 1000)
    for calls in (100, 400):
        bench.burst(1, 20, 0)
        args = [bench.arguments(j) for j in range(calls)]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for j in range(calls):
            bench.burst_flush()
            bench.perturb(5, j)
            solve(args[j])
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        # the same without the solve, and without the perturbation
        for label, with_perturb, with_solve in (("flush only", False, False),
                                                ("flush+perturb", True, False),
                                                ("flush+solve", False, True)):
            torch.cuda.synchronize()
            s0 = time.perf_counter()
            for j in range(calls):
                bench.burst_flush()
                if with_perturb:
                    bench.perturb(5, j)
                if with_solve:
                    solve(args[j])
            s1 = time.perf_counter()
            torch.cuda.synchronize()
            s2 = time.perf_counter()
            print(f"  {label:14s} host {1e6 * (s1 - s0) / calls:7.1f} us/call, wall "
                  f"{1e6 * (s2 - s0) / calls:7.1f} us/call")
        print(f"{Path(solution).name} calls={calls}: enqueue {1e6 * (t1 - t0) / calls:.1f} us/call, "
              f"wall {1e6 * (t2 - t0) / calls:.1f} us/call", flush=True)
