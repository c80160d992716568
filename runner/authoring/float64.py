"""Running a reference in float64, to see whether its float32 answer is within tolerance.

:class:`ComputeInFloat64` is a ``TorchFunctionMode`` under which every floating-point operand
of lower precision is promoted to float64 before each operation, and requests for a float32,
float16 or bfloat16 result (``dtype=``, ``.to(torch.float32)``, ``.float()``, ``.half()``)
give float64 instead. Writes into existing tensors (``out=``, in-place methods such as
``output.copy_(...)``, ``x[i] = ...``) keep the target's dtype, so the final answer is rounded
once, when it is stored; so do views (``out[:k]``, ``out.view(-1)``), so that writing through
one reaches the tensor.

The reference is tried first on float64 copies of its floating-point tensors under the mode; if
it refuses them (an ``assert Q.dtype == torch.float32``), it is run on copies with the original
dtypes under the mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

LOW_PRECISION = (torch.float32, torch.float16, torch.bfloat16)
_TO_FLOAT64 = {torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16}
_STRICT_STORES = ("__setitem__", "index_put_", "index_put")
# operations returning a view of their first argument: it must stay the original tensor, or a
# write through the view (``out[:k].copy_(x)``) would land in a float64 copy and be lost
_VIEWS = {"__getitem__", "view", "view_as", "reshape", "reshape_as", "narrow", "select", "t",
          "transpose", "permute", "squeeze", "unsqueeze", "expand", "expand_as", "as_strided",
          "diagonal", "flatten", "unflatten", "split", "chunk", "unbind", "movedim", "swapaxes",
          "swapdims", "unfold"}


def _promote(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in LOW_PRECISION:
        return value.to(torch.float64)
    if isinstance(value, (list, tuple)):
        return type(value)(_promote(v) for v in value)
    if isinstance(value, torch.dtype) and value in LOW_PRECISION:
        return torch.float64
    return value


def _writes_first_argument(name: str) -> bool:
    if name in ("__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
                "__idiv__", "__ipow__"):
        return True
    return name.endswith("_") and not name.endswith("__")


class ComputeInFloat64(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "__get__":                      # .shape, .dtype, .device, ...
            return func(*args, **kwargs)
        if func in _TO_FLOAT64:
            return args[0].to(torch.float64)
        if name in ("view", "view_as") and any(isinstance(a, torch.dtype) for a in args[1:]):
            return func(*args, **kwargs)          # a bit reinterpretation: leave it alone
        if kwargs.get("dtype") in LOW_PRECISION:
            kwargs["dtype"] = torch.float64
        out = kwargs.pop("out", None)
        if name in _STRICT_STORES and len(args) >= 3:
            # index assignment demands the value's dtype equal the target's: round it on store
            target, value = args[0], args[2]
            if isinstance(value, torch.Tensor) and isinstance(target, torch.Tensor) and \
                    value.dtype != target.dtype and value.is_floating_point():
                value = value.to(target.dtype)
            return func(target, args[1], value, *args[3:], **kwargs)
        if _writes_first_argument(name) or name in _VIEWS:
            args = (args[0],) + tuple(_promote(a) for a in args[1:])
        else:
            args = tuple(_promote(a) for a in args)
        kwargs = {k: _promote(v) for k, v in kwargs.items()}
        if out is None:
            return func(*args, **kwargs)
        result = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and isinstance(result, torch.Tensor):
            out.copy_(result)
            return out
        for target, value in zip(out, result):
            target.copy_(value)
        return out
