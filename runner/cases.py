"""Test cases and their seeds, the same on both sides of a grading.

The grader (:mod:`runner.grader`) and the submission side (:mod:`runner.execute`) each make
the cases from the challenge and the grading seed, so no input ever travels between them. Every
seed a challenge's data is drawn from comes from :func:`stream_seed`, in both challenge formats:

* ``ChallengeBase.generator(k)``: stream ``k`` (the case's number) of the grading seed;
* torch's global generator, while any generator method runs (:func:`global_rng_for`): the
  stream named by the method, restored afterwards;
* a LeetGPU input spec (:mod:`runner.compat.specs`): the stream named by the parameter, under
  the seed its generator method ran with.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Any, Callable, Dict, Iterator, List, Protocol, Tuple

import torch

GENERATORS = ("generate_example_test", "generate_functional_test", "generate_performance_test")



class CaseSource(Protocol):
    """What cases are drawn from: a challenge of either format (our ChallengeBase or LeetGPU's
    base class), whose ``seed`` is the grading seed while a generator method runs. A protocol,
    not the class: :mod:`runner.challenge` imports this module."""

    seed: int

    def generate_example_test(self) -> Dict[str, Any]: ...

    def generate_functional_test(self) -> List[Dict[str, Any]]: ...

    def generate_performance_test(self) -> Dict[str, Any]: ...


SEED_STRIDE = 1_000_003       # streams of one seed never meet those of the next seed
FRESH_SEED_OFFSET = 7919      # the seed of the post-timing "fresh inputs" check
COPY_SEED_OFFSET = 104_729    # seeds of the rotated performance copies

TestCase = Dict[str, Any]


def stream_seed(seed: int, stream: int) -> int:
    """The seed of random stream ``stream`` (a case number, a name's CRC) under ``seed``."""
    return (stream + SEED_STRIDE * seed) % 2**63


def name_stream(name: str) -> int:
    return zlib.crc32(name.encode())


@contextlib.contextmanager
def global_rng_for(seed: int, method_name: str, device: Any) -> Iterator[int]:
    """Torch's global generators seeded for the generator method ``method_name`` under grading
    seed ``seed`` (its seed is yielded), and put back as they were afterwards."""
    device = torch.device(device)
    method_seed = stream_seed(seed, name_stream(method_name))
    on_gpu = device.type == "cuda" and torch.cuda.is_available()   # "cuda" is the default
    with torch.random.fork_rng(devices=[device.index or 0] if on_gpu else []):
        torch.manual_seed(method_seed)
        yield method_seed


def with_seed(challenge: CaseSource, seed: int, make: Callable[[], Any]) -> Any:
    """``make()`` (a generator call) under grading seed ``seed``."""
    saved = getattr(challenge, "seed", 0)
    challenge.seed = seed
    try:
        return make()
    finally:
        challenge.seed = saved


def test_cases(challenge: CaseSource, action: str, seed: int) -> List[Tuple[str, TestCase]]:
    """The example (``run``) or the functional tests (``submit``), named as reports show them."""
    if action == "run":
        return [("example", with_seed(challenge, seed, challenge.generate_example_test))]
    cases = with_seed(challenge, seed, challenge.generate_functional_test)
    return [(f"test {k + 1}", case) for k, case in enumerate(cases)]


def performance_case(challenge: CaseSource, seed: int) -> TestCase:
    return with_seed(challenge, seed, challenge.generate_performance_test)


def copy_seed(seed: int, k: int) -> int:
    """The grading seed of rotated performance copy ``k`` (copy 0 is the case itself)."""
    return seed if k == 0 else seed + COPY_SEED_OFFSET + k


def fresh_seed(seed: int) -> int:
    """The grading seed of the performance case's fresh-inputs check."""
    return seed + FRESH_SEED_OFFSET


def case_bytes(case: TestCase) -> int:
    """Bytes of all tensors in a test case."""
    return sum(v.numel() * v.element_size() for v in case.values() if isinstance(v, torch.Tensor))
