"""Which tensors a LeetGPU generator made as a constant (``torch.zeros``, ``torch.full``, ...).

LeetGPU hands ``solve`` the output buffers its generators made. Where a generator makes an
output with ``torch.zeros`` (72, stream compaction, promises a zero-filled ``out``), a solution
may rely on it, so this runner must not poison that buffer. :class:`ConstantFills` is a
``TorchFunctionMode`` that, while a generator runs, marks every tensor created as a constant
(:func:`runner.buffers.promise_initial`), and keeps the mark through moves and reshapes. The
grader believes a mark only while the tensor still holds that value everywhere, so a buffer
made with zeros and then filled with data is not treated as promised.
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from runner.buffers import INITIAL_ATTR, promise_initial

_ZEROS = {torch.zeros, torch.zeros_like, torch.Tensor.new_zeros, torch.Tensor.zero_}
_ONES = {torch.ones, torch.ones_like, torch.Tensor.new_ones}
# (function, the position of its fill value among the positional arguments)
_FULL = {torch.full: 1, torch.full_like: 1, torch.Tensor.new_full: 2, torch.Tensor.fill_: 1}
# the result holds the same values as the first argument
_SAME_VALUES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu, torch.Tensor.contiguous,
                torch.Tensor.clone, torch.clone, torch.Tensor.view, torch.Tensor.reshape,
                torch.reshape, torch.Tensor.flatten, torch.flatten, torch.Tensor.squeeze,
                torch.Tensor.unsqueeze, torch.Tensor.float, torch.Tensor.half,
                torch.Tensor.detach, torch.Tensor.requires_grad_}


def _fill_value(func, args, kwargs) -> Any:
    if func in _ZEROS:
        return 0
    if func in _ONES:
        return 1
    position = _FULL.get(func)
    if position is None:
        return None
    value = kwargs.get("fill_value", args[position] if len(args) > position else None)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return value if isinstance(value, Number) and not isinstance(value, bool) else None


class ConstantFills(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not isinstance(result, torch.Tensor):
            return result
        value = _fill_value(func, args, kwargs)
        if value is None and func in _SAME_VALUES and args and isinstance(args[0], torch.Tensor):
            value = getattr(args[0], INITIAL_ATTR, None)
        if value is not None:
            promise_initial(result, value)
        return result
