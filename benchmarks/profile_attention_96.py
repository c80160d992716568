"""Run one reference solution on the performance case a few times, for a profiler:

    ncu --clock-control none -k regex:kv_attention python benchmarks/profile_attention_96.py solution.cu
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.attention_common import challenge_96, load_solution, random_case  # noqa: E402

if __name__ == "__main__":
    device = torch.device("cuda")
    challenge = challenge_96(device)
    call = load_solution(sys.argv[1] if len(sys.argv) > 1 else "solution.cu", challenge, device)
    case = random_case(32, 8192, 128, device, seed=3)
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 6):
        call(case)
    torch.cuda.synchronize()
