"""The lock files that give a worker its slot: one worker per slot of a judge, and one per
GPU on the machine, whichever judge it serves."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from runner.judge.worker.settings import WorkerSettings, machine_lock_dir


class SlotBusy(Exception):
    """Another worker holds this GPU (one job per GPU)."""


def _lock(path: Path, what: str, advice: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SlotBusy(f"{what} is already held by {holder} ({path}): {advice}")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


class SlotLocks:
    """The lock files a worker holds for its lifetime."""

    def __init__(self, handles):
        self.handles = handles

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def hold_slot(settings: WorkerSettings) -> SlotLocks:
    """Exclusive locks for this worker's slot: in ``settings.lock_dir`` (one judge's own, so
    judges with different data folders never collide on a CPU slot) and, for a GPU, also in
    :func:`machine_lock_dir`: one worker per GPU on the machine, whichever judge it serves
    (two gradings on one GPU would skew each other's times)."""
    slot = settings.slot_name
    handles = [_lock(settings.lock_dir / f"judge-{slot}.lock", slot,
                     "one worker per slot; stop the other worker, pick another --gpu/--cpu "
                     "slot, or give this judge its own --data-dir")]
    if settings.gpu is not None:
        machine = machine_lock_dir() / f"judge-{slot}.lock"
        if machine.resolve() != (settings.lock_dir / f"judge-{slot}.lock").resolve():
            try:
                handles.append(_lock(machine, f"GPU {settings.gpu}",
                                     "one worker per GPU on this machine, whichever judge it "
                                     "serves; stop the other judge's worker or leave this GPU "
                                     "out (workers: gpus:...)"))
            except SlotBusy:
                handles[0].close()
                raise
    return SlotLocks(handles)
