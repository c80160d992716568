"""The challenge contract (LeetGPU-compatible). Loading a challenge folder is
:mod:`runner.loading`; finding one by number, slug or path is :mod:`runner.catalog`."""

from __future__ import annotations

import ctypes
import functools
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.buffers import promise_initial
from runner.cases import GENERATORS, global_rng_for, stream_seed
from runner.check import default_comparison, inputs_hold_inf
from runner.perturb import default_perturbation

Signature = Dict[str, Tuple[Any, str]]
TestCase = Dict[str, Any]


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
            if callable(method) and not getattr(method, "_runner_generator", False):
                setattr(cls, method_name, _generator(method_name, method))

    # -- helpers for generators -------------------------------------------------------------
    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator for the case numbered ``seed`` under the current grading seed."""
        return torch.Generator(device="cpu").manual_seed(stream_seed(self.seed, seed))

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

    def bytes_written(self, test: TestCase) -> Optional[int]:
        """Of :meth:`bytes_moved`, the bytes a solution must write (the rest it reads): the case
        floor times a probe with the same mix (a kernel's writes can end as dirty lines in L2
        that its end event does not wait for, so writing is cheaper than reading inside the
        timed window). By default the signature's ``out`` and ``inout`` tensors, at most half
        of :meth:`bytes_moved`: a challenge that updates a large buffer in place in part (a
        cache pool, say) says exactly how much."""
        moved = self.bytes_moved(test)
        if not moved:
            return None
        written = sum(test[name].numel() * test[name].element_size()
                      for name, (_, direction) in self.get_solve_signature().items()
                      if direction in ("out", "inout") and isinstance(test.get(name), torch.Tensor))
        return min(written, moved // 2)

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

        allow_nan, allow_inf = self.nonfinite_allowed(case)
        return default_comparison(name, got, expected, self.atol, self.rtol, allow_nan, allow_inf)

    def nonfinite_allowed(self, case: TestCase) -> Tuple[bool, bool]:
        """(NaN, Inf) may appear in an expected output of ``case``: NaN only where the
        challenge sets ``equal_nan = True``; ±inf where it sets ``allow_inf = True`` or an
        input of the case holds an infinity. Anywhere else they are a bug of the reference."""

        directions = {n: d for n, (_, d) in self.get_solve_signature().items()}
        allow_inf = bool(getattr(self, "allow_inf", False)) or inputs_hold_inf(case, directions)
        return bool(getattr(self, "equal_nan", False)), allow_inf


def _generator(method_name: str, method):
    """A generator run with torch's global generator seeded for it (and restored after:
    :func:`runner.cases.global_rng_for`), whose cases hold each declared ``initial_outputs``
    value in that output, marked for the grader (:func:`runner.buffers.promise_initial`)."""
    @functools.wraps(method)
    def generate(self, *args, **kwargs):
        with global_rng_for(getattr(self, "seed", 0), method_name, getattr(self, "device", "cpu")):
            result = method(self, *args, **kwargs)
        declared = getattr(self, "initial_outputs", None) or {}
        if declared:
            for case in (result if isinstance(result, (list, tuple)) else [result]):
                for name, value in declared.items():
                    tensor = case.get(name) if isinstance(case, dict) else None
                    if isinstance(tensor, torch.Tensor):
                        promise_initial(tensor.fill_(value), value)
        return result

    generate._runner_generator = True
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
