"""Running code that allocates on ``"cuda"`` on a machine without a GPU.

LeetGPU's challenges often write ``torch.tensor(..., device="cuda")`` or ``x.cuda()`` in their
generators and reference instead of using ``self.device``. :class:`CudaToDevice` is a
``TorchFunctionMode`` that, while active, sends every such allocation or move to the grading
device instead: ``device=`` arguments naming CUDA, ``Tensor.to("cuda")``, ``Tensor.cuda()``.
Everything else runs unchanged. It is only used when the grading device is not a GPU.

Not covered (these still need a GPU): ``torch.Generator(device="cuda")``, ``torch.cuda.*``
calls such as ``torch.cuda.synchronize()``, and assertions like ``assert x.is_cuda``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.overrides import TorchFunctionMode


def _is_cuda(value: Any) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    if isinstance(value, str):
        return value == "cuda" or value.startswith("cuda:")
    return False


class CudaToDevice(TorchFunctionMode):
    """Map CUDA allocations and moves to ``target`` while active."""

    def __init__(self, target: torch.device):
        super().__init__()
        self.target = torch.device(target)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = self.target
        if func is torch.Tensor.cuda:
            return args[0].to(self.target, **{k: v for k, v in kwargs.items()
                                              if k in ("non_blocking", "memory_format")})
        if func is torch.Tensor.to:
            args = tuple(self.target if _is_cuda(a) else a for a in args)
        return func(*args, **kwargs)


def on_device(device: Any):
    """A context mapping CUDA to ``device`` when ``device`` is not a GPU, else a no-op."""
    device = torch.device(device)
    return contextlib.nullcontext() if device.type == "cuda" else CudaToDevice(device)
