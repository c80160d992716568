"""Preparing a test case for a call of ``solve``: guarded, poisoned outputs and input snapshots.

Every output tensor handed to a solution is a view in the middle of a larger allocation whose
margins hold a known byte pattern, so a write past either end is caught afterwards. Outputs
("out") are poisoned before each call (NaN for floats, a byte pattern for integers) so an
unwritten element fails the comparison; "inout" tensors keep their initial contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from runner.check import bitwise_equal

GUARD_BYTES = 4096
GUARD_PATTERN = 0xA5   # margins of every output allocation
INT_POISON = 0x5B      # each byte of an integer "out" tensor before the call


def poison_(tensor: torch.Tensor) -> None:
    if tensor.is_floating_point():
        tensor.fill_(float("nan"))
    else:
        tensor.view(torch.uint8).fill_(INT_POISON) if tensor.numel() else None


@dataclass
class GuardedOutput:
    name: str
    storage: torch.Tensor  # uint8, [GUARD_BYTES + nbytes + GUARD_BYTES]
    view: torch.Tensor
    nbytes: int
    shape: Tuple[int, ...] = ()

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
    def like(cls, name: str, template: torch.Tensor) -> "GuardedOutput":
        nbytes = template.numel() * template.element_size()
        storage = torch.full((nbytes + 2 * GUARD_BYTES,), GUARD_PATTERN, dtype=torch.uint8,
                             device=template.device)
        view = storage[GUARD_BYTES:GUARD_BYTES + nbytes].view(template.dtype).view(template.shape)
        view.copy_(template)
        return cls(name, storage, view, nbytes, tuple(template.shape))

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

    def poison(self, directions: Dict[str, str]) -> None:
        for name, out in self.outputs.items():
            if directions[name] == "out":
                poison_(out.written())

    def modified_inputs(self) -> List[str]:
        return [name for name, snap in self.input_snapshots.items()
                if not bitwise_equal(self.args[name], snap)]

    def guard_damage(self) -> List[str]:
        return [msg for msg in (g.damage() for g in self.outputs.values()) if msg]


def directions_of(signature: Dict[str, Tuple[Any, str]]) -> Dict[str, str]:
    return {name: direction for name, (_, direction) in signature.items()}


def prepare_call(case: Dict[str, Any], directions: Dict[str, str]) -> PreparedCall:
    """Copies ``case`` into fresh buffers: guarded outputs, inputs plus a snapshot of each."""
    args: Dict[str, Any] = {}
    outputs: Dict[str, GuardedOutput] = {}
    snapshots: Dict[str, torch.Tensor] = {}
    for name, value in case.items():
        if not isinstance(value, torch.Tensor):
            args[name] = value
            continue
        if directions.get(name, "in") == "in":
            args[name] = value.clone()
            snapshots[name] = value.clone()
        else:
            outputs[name] = GuardedOutput.like(name, value.contiguous())
            args[name] = outputs[name].view
    prepared = PreparedCall(args, outputs, snapshots)
    prepared.poison(directions)
    return prepared
