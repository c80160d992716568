"""``core.challenge_base`` for challenge folders written for LeetGPU's public challenge set.

Both of LeetGPU's styles load unmodified::

    class Challenge(ChallengeBase):                 # older: values passed to __init__
        def __init__(self):
            super().__init__(name="Vector Addition", atol=1e-05, rtol=1e-05, num_gpus=1,
                             access_tier="free")

    class Challenge(ChallengeBase):                 # newer: class attributes, and
        name = "1D Convolution"                     # generators may return input specs
        atol = rtol = 1e-04                         # (RandTensor, OutTensor, ...)
        num_gpus, access_tier = 1, "free"

The class is a :class:`runner.challenge.ChallengeBase`, so the grader treats it like any other
challenge. What it adds, applied to each subclass's own methods when the class is created:

* (as for every challenge: :func:`runner.cases.global_rng_for`) generators run with the global
  random state seeded from the grading seed and the generator's name (and restored afterwards),
  so unseeded ``torch.rand`` calls give the same case on every call, while a different grading
  seed gives different data;
* input specs in a generated case become tensors on ``self.device`` (:mod:`runner.compat.specs`);
* an output the generator makes as a constant (``torch.zeros``, ``FullTensor``) is handed to
  ``solve`` holding that value, not poison, as on LeetGPU (:mod:`runner.compat.fills`);
* when ``self.device`` is not a GPU, ``device="cuda"`` allocations inside the generators and
  the reference go to ``self.device`` instead (:mod:`runner.compat.device_map`).

``reference_impl_jax`` and other extra methods are left alone (this runner does not grade JAX).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from runner.cases import GENERATORS, name_stream, stream_seed
from runner.challenge import ChallengeBase as _RunnerChallengeBase
from runner.compat.device_map import on_device
from runner.compat.fills import ConstantFills
from runner.compat.specs import (FullTensor, OutTensor, RandIntTensor, RandnTensor, RandTensor,
                                 TensorSpec, materialize)

__all__ = ["ChallengeBase", "RandTensor", "RandnTensor", "RandIntTensor", "FullTensor",
           "OutTensor", "TensorSpec"]

_OLD_STYLE_FIELDS = ("name", "atol", "rtol", "num_gpus", "access_tier")


class ChallengeBase(_RunnerChallengeBase):
    """LeetGPU's challenge base class, as this runner implements it."""

    def __init__(self, *args: Any, device: Any = "cuda", **fields: Any):
        # older style: ChallengeBase.__init__(name, atol, rtol, num_gpus, access_tier);
        # newer style: ChallengeBase.__init__(device="cuda") with the fields as class attributes
        if len(args) == 1 and not fields:
            device = args[0]
        else:
            fields.update(zip(_OLD_STYLE_FIELDS, args))
        unknown = set(fields) - set(_OLD_STYLE_FIELDS)
        if unknown:
            raise TypeError(f"ChallengeBase.__init__() got unexpected arguments: {sorted(unknown)}")
        for key, value in fields.items():
            setattr(self, key, value)
        if "num_gpus" not in fields and not hasattr(type(self), "num_gpus"):
            self.num_gpus = 1
        if "access_tier" not in fields and not hasattr(type(self), "access_tier"):
            self.access_tier = "free"
        self.device = device
        self.seed = 0

    def __init_subclass__(cls, **kwargs: Any):
        for method_name in GENERATORS:
            method = cls.__dict__.get(method_name)
            if callable(method) and not getattr(method, "_compat_wrapped", False):
                setattr(cls, method_name, _generator(method_name, method))
        reference = cls.__dict__.get("reference_impl")
        if callable(reference) and not getattr(reference, "_compat_wrapped", False):
            setattr(cls, "reference_impl", _on_grading_device(reference))
        # last: the runner's own wrapping (the seeded global generator, declared initial
        # outputs) runs around ours, and sees materialized cases
        super().__init_subclass__(**kwargs)


def _generator(method_name: str, method: Callable) -> Callable:
    """The method on the grading device with constant outputs kept, its specs materialized;
    the runner's own wrapping around it has seeded torch's global generator for it
    (:func:`runner.cases.global_rng_for`): that seed is the specs' too."""
    @functools.wraps(method)
    def generate(self, *args, **kwargs):
        device = torch.device(self.device)
        with on_device(device), ConstantFills():
            case = method(self, *args, **kwargs)
        seed = stream_seed(int(getattr(self, "seed", 0)), name_stream(method_name))
        return materialize(case, device, seed, method_name)

    generate._compat_wrapped = True
    return generate


def _on_grading_device(method: Callable) -> Callable:
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with on_device(self.device):
            return method(self, *args, **kwargs)

    run._compat_wrapped = True
    return run
