"""The declarative input specs of LeetGPU's newer challenges, and turning them into tensors.

A generator may return, instead of a tensor, ``RandTensor(shape, low, high)``,
``RandnTensor(shape, mean, std)``, ``RandIntTensor(shape, low, high)``,
``FullTensor(shape, value)`` or ``OutTensor(shape)`` (each with a ``dtype`` given by name, e.g.
``"float32"``, or as a ``torch.dtype``). :func:`materialize` replaces each with a tensor on the
grading device, drawn on the CPU from a generator seeded by the case and the parameter's name,
so a case is the same on every device and every run.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch

from runner.buffers import INITIAL_ATTR, promise_initial
from runner.cases import name_stream, stream_seed

DType = Union[str, torch.dtype]


class TensorSpec:
    """Base of the specs: a shape and a dtype."""

    def __init__(self, shape: Sequence[int], dtype: DType = "float32"):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        return to_torch_dtype(self.dtype)

    def build(self, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class RandTensor(TensorSpec):
    """Uniform random values in ``[low, high)``."""

    def __init__(self, shape, low=0.0, high=1.0, dtype: DType = "float32"):
        super().__init__(shape, dtype)
        self.low, self.high = low, high

    def build(self, generator):
        values = torch.rand(self.shape, generator=generator, dtype=torch.float64)
        return (self.low + (self.high - self.low) * values).to(self.torch_dtype)


class RandnTensor(TensorSpec):
    """Normally distributed values with ``mean`` and standard deviation ``std``."""

    def __init__(self, shape, mean=0.0, std=1.0, dtype: DType = "float32"):
        super().__init__(shape, dtype)
        self.mean, self.std = mean, std

    def build(self, generator):
        values = torch.randn(self.shape, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * values).to(self.torch_dtype)


class RandIntTensor(TensorSpec):
    """Uniform random integers in ``[low, high)``."""

    def __init__(self, shape, low, high, dtype: DType = "int32"):
        super().__init__(shape, dtype)
        self.low, self.high = int(low), int(high)

    def build(self, generator):
        values = torch.randint(self.low, self.high, self.shape, generator=generator,
                               dtype=torch.int64)
        return values.to(self.torch_dtype)


class FullTensor(TensorSpec):
    """Every element ``value`` (zeros, ones, a constant)."""

    def __init__(self, shape, value=0.0, dtype: DType = "float32"):
        super().__init__(shape, dtype)
        self.value = value

    def build(self, generator):
        return promise_initial(torch.full(self.shape, self.value, dtype=self.torch_dtype),
                               self.value)


class OutTensor(TensorSpec):
    """An output buffer of this shape (its contents are not defined; the grader poisons it)."""

    def build(self, generator):
        return torch.zeros(self.shape, dtype=self.torch_dtype)


def to_torch_dtype(dtype: DType) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} in a tensor spec; use a torch dtype name "
                         f"such as 'float32', 'float16', 'int32' or 'int8'")
    return value


def materialize(value: Any, device: torch.device, case_seed: int, name: str = "") -> Any:
    """``value`` with every spec in it (a case dict, or a list of them) turned into a tensor."""
    if isinstance(value, TensorSpec):
        if torch.device(device).type == "meta":  # shapes only: nothing to draw
            return torch.empty(value.shape, dtype=value.torch_dtype, device=device)
        generator = torch.Generator(device="cpu").manual_seed(
            stream_seed(case_seed, name_stream(name)))
        built = value.build(generator)
        moved = built.to(device).contiguous()
        initial = getattr(built, INITIAL_ATTR, None)
        return promise_initial(moved, initial) if initial is not None else moved
    if isinstance(value, dict):
        return {k: materialize(v, device, case_seed, f"{name}/{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v, device, case_seed, f"{name}/{i}") for i, v in enumerate(value)]
    return value
