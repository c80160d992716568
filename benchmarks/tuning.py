"""What the tune scripts share: building a CUDA reference's ``-D`` variants in parallel,
loading a Triton reference whose ``CONFIG`` dict a variant overrides, and timing one variant
with the harness's timer on rotated copies of a case (so consecutive runs share nothing in L2)."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch

from runner.languages import cuda_build
from runner.timing import L2Flusher, time_cuda

BUILD_JOBS = 8


def fresh(case: Dict) -> Dict:
    """A copy of ``case`` whose tensors are new (ints shared)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}


def build_all(builds: Iterable[Tuple[Path, Sequence[str]]], device: torch.device) -> None:
    """nvcc-build each (source, extra flags) for ``device``, in parallel, into the build cache
    (a later ``cuda.load`` with the same flags finds it there)."""
    capability = torch.cuda.get_device_capability(device)
    with ThreadPoolExecutor(max_workers=BUILD_JOBS) as pool:
        list(pool.map(lambda b: cuda_build.build(b[0], capability, (), list(b[1])), builds))


class ConfiguredModule:
    """A Triton reference with a module-level ``CONFIG`` dict; :meth:`use` applies a variant's
    override to its defaults, :meth:`reset` puts the defaults back."""

    def __init__(self, path: Path, name: str):
        spec = importlib.util.spec_from_file_location(name, path)
        self.module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        self.defaults = dict(self.module.CONFIG)

    def use(self, override: Dict) -> ModuleType:
        self.module.CONFIG.clear()
        self.module.CONFIG.update(self.defaults, **override)
        return self.module

    def reset(self) -> None:
        self.use({})


def time_rotated(call: Callable[[Dict], None], copies: List[Dict], nbytes: int, budget_s: float,
                 flusher: L2Flusher) -> Dict:
    """The timing of ``call`` over ``copies`` in turn (the harness's timer, L2 flushed), as a
    row: the timer's fields, ``copies`` and ``gbps`` for ``nbytes`` moved per call."""
    timing = time_cuda(lambda i: call(copies[i % len(copies)]), budget_s=budget_s, flusher=flusher)
    return dict(copies=len(copies), gbps=nbytes / (timing.median_ms / 1e3) / 1e9, **timing.to_dict())
