"""The challenge contract (LeetGPU-compatible) and loading a challenge folder; finding one by
number, slug or path is :mod:`runner.catalog`."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.buffers import promise_initial
from runner.catalog import ChallengeInfo

Signature = Dict[str, Tuple[Any, str]]
TestCase = Dict[str, Any]


GENERATORS = ("generate_example_test", "generate_functional_test", "generate_performance_test")


class ChallengeBase(ABC):
    """Base class of every challenge.

    A challenge allocates its test tensors on ``self.device`` (set by the runner before any
    generator is called; ``"cuda"`` by default, as LeetGPU's harness assumes).
    Random data is drawn on the CPU from ``self.generator(seed)`` and then moved, so a case
    reproduces bit for bit on any device.

    Class attributes a challenge may set:

    * ``initial_outputs``: ``{"out": 0.0}`` promises that the output ``out`` holds that value
      when ``solve`` is called (a stream compaction that only writes what it keeps, say); the
      generators' tensors are filled with it and the grader hands the buffer over so filled,
      not poisoned.
    * ``equal_nan = True``: NaN is a right answer where the reference gives NaN (matched only
      by NaN); by default an expected NaN is a bug of the reference.
    * ``allow_inf = True``: ±inf may be a right answer even where no input holds an infinity
      (matched only by the same infinity); where an input does, it always may.
    """

    initial_outputs: Dict[str, float] = {}
    equal_nan: bool = False
    allow_inf: bool = False

    def __init__(self, name: str, atol: float, rtol: float, num_gpus: int = 1,
                 access_tier: str = "free"):
        self.name = name
        self.atol = atol
        self.rtol = rtol
        self.num_gpus = num_gpus
        self.access_tier = access_tier
        self.device = torch.device("cuda")
        self.seed = 0  # the grading seed, mixed into every generator; the runner sets it

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        for method_name in GENERATORS:
            method = cls.__dict__.get(method_name)
            if callable(method) and not getattr(method, "_fills_initial_outputs", False):
                setattr(cls, method_name, _filling_initial_outputs(method))

    # -- helpers for generators -------------------------------------------------------------
    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator for the case numbered ``seed`` under the current grading seed."""
        return torch.Generator(device="cpu").manual_seed(seed + 1_000_003 * self.seed)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device).contiguous()

    # -- the contract -------------------------------------------------------------------------
    @abstractmethod
    def reference_impl(self, **kwargs) -> None: ...

    @abstractmethod
    def get_solve_signature(self) -> Signature: ...

    @abstractmethod
    def generate_example_test(self) -> TestCase: ...

    @abstractmethod
    def generate_functional_test(self) -> List[TestCase]: ...

    @abstractmethod
    def generate_performance_test(self) -> TestCase: ...

    # -- optional: a cost model for reporting achieved bandwidth / throughput -----------------
    def bytes_moved(self, test: TestCase) -> Optional[int]:
        """The fewest bytes a solution must move through device memory for ``test``."""
        return None

    def flops(self, test: TestCase) -> Optional[int]:
        """The floating-point operations a solution must do for ``test``."""
        return None

    # -- optional: how the inputs may change between timed runs --------------------------------
    def perturb_inputs(self, args: TestCase, base: TestCase, generator: torch.Generator) -> None:
        """Before each timed run, write into the input tensors of ``args`` a changed version of
        ``base`` (the performance case as generated), drawing randomness only from
        ``generator`` (on the grading device; the grader repeats the call to check the run).
        It must keep the spec's constraints, change the correct output beyond the tolerance,
        and be cheap (it runs inside the grader's own timing of a burst): change the small
        inputs densely. The default multiplies each floating-point input by one random factor
        in [0.5, 0.95] (signs, zeros, order and bounds containing zero are kept)."""
        from runner.perturb import default_perturbation

        default_perturbation(args, base, {n: d for n, (_, d) in self.get_solve_signature().items()},
                             generator)

    # -- optional: a checking rule of the challenge's own -------------------------------------
    def compare_output(self, name: str, got: torch.Tensor, expected: torch.Tensor,
                       case: TestCase):
        """Check output ``name``: ``got`` (the solution's) against ``expected`` (the
        reference's), both on the CPU; ``case`` holds the inputs as generated (inout tensors
        as they were before the call). Returns a :class:`runner.check.Comparison`. The default
        is ``torch.testing.assert_close``'s rule for floats (see :func:`runner.check.compare`:
        an expected inf is matched only by the same inf; NaN only where ``equal_nan``), bit for
        bit otherwise; override it only for a rule the challenge's spec states."""
        from runner.check import default_comparison

        allow_nan, allow_inf = self.nonfinite_allowed(case)
        return default_comparison(name, got, expected, self.atol, self.rtol, allow_nan, allow_inf)

    def nonfinite_allowed(self, case: TestCase) -> Tuple[bool, bool]:
        """(NaN, Inf) may appear in an expected output of ``case``: NaN only where the
        challenge sets ``equal_nan = True``; ±inf where it sets ``allow_inf = True`` or an
        input of the case holds an infinity. Anywhere else they are a bug of the reference."""
        from runner.check import inputs_hold_inf

        directions = {n: d for n, (_, d) in self.get_solve_signature().items()}
        allow_inf = bool(getattr(self, "allow_inf", False)) or inputs_hold_inf(case, directions)
        return bool(getattr(self, "equal_nan", False)), allow_inf


def _filling_initial_outputs(method):
    """A generator whose cases hold each declared ``initial_outputs`` value in that output,
    marked for the grader (:func:`runner.buffers.promise_initial`)."""
    @functools.wraps(method)
    def generate(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        declared = getattr(self, "initial_outputs", None) or {}
        if declared:
            for case in (result if isinstance(result, (list, tuple)) else [result]):
                for name, value in declared.items():
                    tensor = case.get(name) if isinstance(case, dict) else None
                    if isinstance(tensor, torch.Tensor):
                        promise_initial(tensor.fill_(value), value)
        return result

    generate._fills_initial_outputs = True
    return generate


def is_pointer(ctype: Any) -> bool:
    return isinstance(ctype, type) and issubclass(ctype, ctypes._Pointer)


def is_tensor_type(ctype: Any) -> bool:
    """A signature type that stands for a tensor: a ctypes pointer, or ``torch.Tensor`` (a
    tensor of any dtype, as in LeetGPU's PyTorch-only challenges)."""
    return is_pointer(ctype) or (isinstance(ctype, type) and issubclass(ctype, torch.Tensor))


def is_object_type(ctype: Any) -> bool:
    """A signature type that stands for a Python object handed to ``solve`` as it is (e.g.
    ``torch.nn.Module``): neither a tensor nor a ctypes scalar."""
    return (isinstance(ctype, type) and not is_tensor_type(ctype)
            and not issubclass(ctype, (ctypes._SimpleCData, ctypes._Pointer)))


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"_challenge_{path.name}_{digest}"


def load_challenge(info: ChallengeInfo, device: torch.device) -> ChallengeBase:
    """Import ``challenge.py`` from the folder and return its ``Challenge`` instance.

    A LeetGPU-format folder (``from core.challenge_base import ChallengeBase``) gets this
    runner's compatible ``core`` package (:mod:`runner.compat`) while it is imported.
    """
    from runner.compat import leetgpu_imports
    from runner.languages import triton as triton_language

    # before anything can import triton (generating a case may): on the CPU, Triton kernels,
    # a solution's or the challenge's own, run under the interpreter
    triton_language.prepare(torch.device(device))
    module_name = _module_name(info.path)
    spec = importlib.util.spec_from_file_location(module_name, info.path / "challenge.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    with leetgpu_imports():
        spec.loader.exec_module(module)
        challenge = module.Challenge()
    challenge.device = torch.device(device)
    return challenge


def is_leetgpu_format(challenge: ChallengeBase) -> bool:
    """True for a challenge written against LeetGPU's ``core.challenge_base``."""
    from runner.compat.core.challenge_base import ChallengeBase as LeetGPUBase

    return isinstance(challenge, LeetGPUBase)
