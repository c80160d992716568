"""A PyTorch or Triton solution written for a GPU, graded on the CPU.

LeetGPU code often allocates with ``torch.empty(..., device="cuda")`` and waits with
``torch.cuda.synchronize()`` inside ``solve``; on a machine without a GPU both raise "Torch not
compiled with CUDA enabled". While :func:`cuda_on_cpu` is active (around the solution's import
and each call of its ``solve``, on the submission's side: in the jail), allocations and moves
naming CUDA go to the CPU (:class:`runner.compat.device_map.CudaToDevice`) and
``torch.cuda.synchronize`` does nothing (the CPU has nothing to wait for). On a GPU nothing
changes. The grader says so once in the report (:func:`note_for`, read from the source).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator, List

import torch

from runner.compat.device_map import CudaToDevice

# what in a solution's source this covers: a CUDA device named, a .cuda() move, a synchronize
NAMES_CUDA = re.compile(r"""["']cuda(:\d+)?["']|\.cuda\(|torch\.cuda\.synchronize\(""")


def _no_wait(device=None) -> None:
    """``torch.cuda.synchronize`` on the CPU: nothing runs asynchronously there."""


@contextlib.contextmanager
def cuda_on_cpu(device: torch.device) -> Iterator[None]:
    """CUDA allocations, moves and synchronizes of the code run inside, on ``device`` when it is
    not a GPU (a no-op on a GPU)."""
    if torch.device(device).type == "cuda":
        yield
        return
    saved = torch.cuda.synchronize
    torch.cuda.synchronize = _no_wait
    try:
        with CudaToDevice(torch.device(device)):
            yield
    finally:
        torch.cuda.synchronize = saved


def note_for(path: Path, language: str, device: torch.device) -> List[str]:
    """The report's one note, for a PyTorch or Triton solution graded on the CPU whose source
    names CUDA (read, never run: the grader's side calls this)."""
    if torch.device(device).type == "cuda" or language not in ("pytorch", "triton"):
        return []
    try:
        source = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    if not NAMES_CUDA.search(source):
        return []
    return ['no GPU: your solution\'s device="cuda" allocations and moves ran on the CPU, and '
            'torch.cuda.synchronize() did nothing (on a GPU they run as written)']
