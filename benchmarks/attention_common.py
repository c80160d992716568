"""What the challenge-96 benchmarks share: random cases drawn on the GPU (fast, for sweeps),
the float64 answer, and the implementations under test by name."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict

import torch

from runner.catalog import find_challenge
from runner.challenge import ChallengeBase
from runner.loading import load_challenge
from runner.languages import backend, detect

REPO = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention" / "reference"
SOLUTION_FILES = {
    "CUDA (solution.cu)": "solution.cu",
    "CuPy (solution.cupy.py)": "solution.cupy.py",
    "Triton (solution.triton.py)": "solution.triton.py",
    "PyTorch (solution.pytorch.py)": "solution.pytorch.py",
}
PYTORCH_REFERENCE = "PyTorch reference"
COMPILED_REFERENCE = "torch.compile(reference)"


def challenge_96(device: torch.device) -> ChallengeBase:
    return load_challenge(find_challenge("96"), device)


def random_case(num_heads: int, seq_len: int, head_dim: int, device: torch.device,
                seed: int) -> Dict:
    """A case with the challenge's value ranges, drawn directly on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def ints(shape):
        return torch.randint(-127, 128, shape, generator=gen, device=device, dtype=torch.int8)

    def scales():
        return 0.005 + 0.045 * torch.rand(num_heads, seq_len, generator=gen, device=device)

    return {"Q": torch.randn(num_heads, head_dim, generator=gen, device=device),
            "K_int8": ints((num_heads, seq_len, head_dim)),
            "V_int8": ints((num_heads, seq_len, head_dim)),
            "k_scale": scales(), "v_scale": scales(),
            "output": torch.full((num_heads, head_dim), float("nan"), device=device),
            "num_heads": num_heads, "seq_len": seq_len, "head_dim": head_dim}


def float64_attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim, **_) -> torch.Tensor:
    k = K_int8.double() * k_scale.double()[..., None]
    v = V_int8.double() * v_scale.double()[..., None]
    logits = torch.einsum("hd,hsd->hs", Q.double(), k) / math.sqrt(head_dim)
    return torch.einsum("hs,hsd->hd", torch.softmax(logits, dim=-1), v)


def mismatches(challenge: ChallengeBase, case: Dict) -> int:
    """Elements of ``case['output']`` outside the challenge's tolerance (NaN counts)."""
    expected = float64_attention(**case)
    got = case["output"].double()
    bad = ~torch.isfinite(got) | ((got - expected).abs() > challenge.atol + challenge.rtol * expected.abs())
    return int(bad.sum())


def load_solution(file_name: str, challenge: ChallengeBase, device: torch.device) -> Callable[[Dict], None]:
    path = REFERENCE_DIR / file_name
    return backend(detect(path)).load(path, challenge, device)


def implementations(challenge: ChallengeBase, device: torch.device) -> Dict[str, Callable[[Dict], None]]:
    """Name -> call(case) for the PyTorch reference, its torch.compile'd form and every
    reference solution (loaded as trusted code, in this process)."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = 64   # one graph per benchmarked shape
    compiled = torch.compile(challenge.reference_impl)
    impls = {PYTORCH_REFERENCE: lambda case: challenge.reference_impl(**case),
             COMPILED_REFERENCE: lambda case: compiled(**case)}
    for name, file_name in SOLUTION_FILES.items():
        impls[name] = load_solution(file_name, challenge, device)
    return impls
