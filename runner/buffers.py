"""Preparing a test case for a call of ``solve``: guarded, poisoned outputs and input snapshots.

Every output tensor handed to a solution is a view in the middle of a larger allocation whose
margins hold a known byte pattern, so a write past either end is caught afterwards. Outputs
("out") are poisoned before each call (a NaN with a payload of ours for floats, a byte pattern
for integers) so an unwritten element fails the comparison; "inout" tensors keep their initial
contents. An "out" tensor whose initial value the challenge promises (a declared
``initial_outputs``, or, in LeetGPU's format, an output its generator makes with
``torch.zeros``) is handed over holding that value instead of poison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.check import NAN_POISON_BITS, bitwise_equal
from runner.policy import GUARD_BYTES

GUARD_PATTERN = 0xA5   # margins of every output allocation
INT_POISON = 0x5B      # each byte of an integer "out" tensor before the call
INITIAL_ATTR = "_runner_initial_value"
_SAME_SIZE_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def poison_(tensor: torch.Tensor) -> None:
    if not tensor.numel():
        return
    if tensor.dtype in NAN_POISON_BITS:
        tensor.view(_SAME_SIZE_INT[tensor.element_size()]).fill_(NAN_POISON_BITS[tensor.dtype])
    elif tensor.is_floating_point():
        tensor.fill_(float("nan"))
    else:
        tensor.view(torch.uint8).fill_(INT_POISON)


def promise_initial(tensor: torch.Tensor, value: float) -> torch.Tensor:
    """Mark ``tensor`` (an output as generated) as promised to hold ``value`` when ``solve``
    is called; returns it."""
    setattr(tensor, INITIAL_ATTR, value)
    return tensor


def promised_initial(tensor: Any) -> Optional[float]:
    """The value ``tensor`` was promised to hold (see :func:`promise_initial`), if it still
    holds it everywhere; None otherwise."""
    value = getattr(tensor, INITIAL_ATTR, None)
    if value is None or not isinstance(tensor, torch.Tensor):
        return None
    if tensor.device.type != "meta" and tensor.numel() and not bool((tensor == value).all()):
        return None        # written after it was made: nothing is promised any more
    return value


def fill_initial_(tensor: torch.Tensor, initial: Optional[float]) -> None:
    """An output before a call: its promised value, or poison."""
    if initial is None:
        poison_(tensor)
    else:
        tensor.fill_(initial)


@dataclass
class GuardedOutput:
    name: str
    storage: torch.Tensor  # uint8, [GUARD_BYTES + nbytes + GUARD_BYTES]
    view: torch.Tensor
    nbytes: int
    shape: Tuple[int, ...] = ()
    initial: Optional[float] = None   # the value promised before each call (else: poison)

    @classmethod
    def in_row(cls, name: str, row: torch.Tensor, template: torch.Tensor) -> "GuardedOutput":
        """A guarded output in ``row`` (uint8, at least GUARD_BYTES + nbytes + GUARD_BYTES
        long: a row of a larger buffer), initialised from ``template``."""
        nbytes = template.numel() * template.element_size()
        storage = row[:nbytes + 2 * GUARD_BYTES]
        storage.fill_(GUARD_PATTERN)
        view = storage[GUARD_BYTES:GUARD_BYTES + nbytes].view(template.dtype).view(template.shape)
        view.copy_(template)
        return cls(name, storage, view, nbytes, tuple(template.shape))

    @classmethod
    def like(cls, name: str, template: torch.Tensor,
             initial: Optional[float] = None) -> "GuardedOutput":
        nbytes = template.numel() * template.element_size()
        storage = torch.full((nbytes + 2 * GUARD_BYTES,), GUARD_PATTERN, dtype=torch.uint8,
                             device=template.device)
        view = storage[GUARD_BYTES:GUARD_BYTES + nbytes].view(template.dtype).view(template.shape)
        view.copy_(template)
        return cls(name, storage, view, nbytes, tuple(template.shape), initial)

    def written(self) -> torch.Tensor:
        """The output as stored in *our* allocation: a fresh view, so a solution that swaps
        the storage of the tensor it was given (``output.set_(...)``) is not believed."""
        return self.storage[GUARD_BYTES:GUARD_BYTES + self.nbytes].view(self.view.dtype).view(
            self.shape)

    def damage(self) -> Optional[str]:
        """A message naming the out-of-bounds write, or None when both margins are intact."""
        before = self.storage[:GUARD_BYTES]
        after = self.storage[GUARD_BYTES + self.nbytes:]
        bad_before = torch.nonzero(before != GUARD_PATTERN).reshape(-1)
        bad_after = torch.nonzero(after != GUARD_PATTERN).reshape(-1)
        parts = []
        if bad_after.numel():
            parts.append(f"wrote up to {int(bad_after.max()) + 1} bytes past the end of `{self.name}`")
        if bad_before.numel():
            parts.append(f"wrote up to {GUARD_BYTES - int(bad_before.min())} bytes before the "
                         f"start of `{self.name}`")
        return "; ".join(parts) or None


@dataclass
class PreparedCall:
    """The arguments of one call of ``solve`` and what is needed to check it afterwards."""

    args: Dict[str, Any]
    outputs: Dict[str, GuardedOutput]
    input_snapshots: Dict[str, torch.Tensor]
    module_snapshots: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)

    def poison(self, directions: Dict[str, str]) -> None:
        """Every "out" tensor back to its state before a call: poison, or its promised value."""
        for name, out in self.outputs.items():
            if directions[name] == "out":
                fill_initial_(out.written(), out.initial)

    def modified_inputs(self) -> List[str]:
        changed = [name for name, snap in self.input_snapshots.items()
                   if not bitwise_equal(self.args[name], snap)]
        return changed + [name for name, snap in self.module_snapshots.items()
                          if not _same_state(self.args[name], snap)]

    def refill(self, case: Dict[str, Any], directions: Dict[str, str]) -> None:
        """Write a new case's values into these same buffers (the check that an answer is not
        cached by shape or pointer): tensors copied in place, a module's parameters and
        buffers loaded in place (or the module replaced where its structure differs), any
        other value replaced; outputs then poisoned as before a call."""
        for name, value in case.items():
            if isinstance(value, torch.Tensor):
                if directions.get(name, "in") == "in":
                    self.args[name].copy_(value)
                    self.input_snapshots[name].copy_(value)
                else:
                    self.outputs[name].written().copy_(value)
            elif _is_module(value):
                current = self.args.get(name)
                if not (_is_module(current) and _load_state_in_place(current, value)):
                    self.args[name] = value
                self.module_snapshots[name] = _state_of(self.args[name])
            else:
                self.args[name] = value
        self.poison(directions)

    def guard_damage(self) -> List[str]:
        return [msg for msg in (g.damage() for g in self.outputs.values()) if msg]


def directions_of(signature: Dict[str, Tuple[Any, str]]) -> Dict[str, str]:
    return {name: direction for name, (_, direction) in signature.items()}


def prepare_call(case: Dict[str, Any], directions: Dict[str, str]) -> PreparedCall:
    """Copies ``case`` into fresh buffers: guarded outputs, inputs plus a snapshot of each."""
    args: Dict[str, Any] = {}
    outputs: Dict[str, GuardedOutput] = {}
    snapshots: Dict[str, torch.Tensor] = {}
    modules: Dict[str, Dict[str, torch.Tensor]] = {}
    for name, value in case.items():
        if not isinstance(value, torch.Tensor):
            args[name] = value
            if _is_module(value):       # e.g. an nn.Module input: it must come back unchanged
                modules[name] = _state_of(value)
            continue
        if directions.get(name, "in") == "in":
            args[name] = value.clone()
            snapshots[name] = value.clone()
        else:
            initial = promised_initial(value) if directions.get(name) == "out" else None
            outputs[name] = GuardedOutput.like(name, value.contiguous(), initial)
            args[name] = outputs[name].view
    prepared = PreparedCall(args, outputs, snapshots, modules)
    prepared.poison(directions)
    return prepared


def _is_module(value: Any) -> bool:
    return isinstance(value, torch.nn.Module)


def _state_of(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}


def _same_state(module: Any, snapshot: Dict[str, torch.Tensor]) -> bool:
    if not _is_module(module):
        return False
    state = module.state_dict(keep_vars=True)
    return set(state) == set(snapshot) and all(bitwise_equal(state[k].detach(), snapshot[k])
                                               for k in snapshot)


def _load_state_in_place(target: torch.nn.Module, source: torch.nn.Module) -> bool:
    """Copy ``source``'s parameters and buffers into ``target``'s tensors; False (nothing
    copied) where their names, shapes or dtypes differ."""
    mine = target.state_dict(keep_vars=True)
    theirs = source.state_dict(keep_vars=True)
    if set(mine) != set(theirs) or any(
            (mine[k].shape, mine[k].dtype) != (theirs[k].shape, theirs[k].dtype) for k in mine):
        return False
    with torch.no_grad():
        for key, tensor in mine.items():
            tensor.copy_(theirs[key])
    return True
