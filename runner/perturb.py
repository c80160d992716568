"""Inputs that change before every timed call, so that no call finds an answer to remember.

Before each timed run (outside the timed region) the run's input copy is rewritten from its
pristine base by the challenge's ``perturb_inputs(args, base, generator)``: a deterministic
function of ``generator``, which the parent seeds the same way to recompute the run's inputs
and check its outputs. A challenge overrides it to keep its constraints (valid block tables,
unique slots) and to change the correct output beyond the tolerance cheaply (the small tensors
densely). The default multiplies every floating-point input by one random factor in
[0.5, 0.95]: signs, zeros, order and bounds that contain zero are kept.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict

import torch


def run_generator(device: torch.device, nonce: int, index: int,
                  reuse: "torch.Generator | None" = None) -> torch.Generator:
    """The generator of timed run ``index`` under ``nonce`` (the same in parent and child);
    ``reuse`` is reseeded instead of making a new one (cheaper inside a timed burst)."""
    seed = int.from_bytes(hashlib.blake2b(f"{nonce}:{index}".encode(), digest_size=8).digest(),
                          "little") >> 1
    return (reuse or torch.Generator(device=device)).manual_seed(seed)


def default_perturbation(args: Dict[str, Any], base: Dict[str, Any], directions: Dict[str, str],
                         generator: torch.Generator) -> None:
    for name, value in base.items():
        if (directions.get(name) == "in" and isinstance(value, torch.Tensor)
                and value.is_floating_point() and value.numel()):
            factor = 0.5 + 0.45 * torch.rand((), generator=generator, device=generator.device)
            torch.mul(value, factor.to(value.dtype), out=args[name])


def perturb(challenge, args: Dict[str, Any], base: Dict[str, Any], directions: Dict[str, str],
            generator: torch.Generator) -> None:
    """Rewrite the inputs in ``args`` from ``base`` for one timed run."""
    custom = getattr(challenge, "perturb_inputs", None)
    if custom is not None:
        custom(args, base, generator)
    else:
        default_perturbation(args, base, directions, generator)
