"""Starting a host's workers (one per GPU, or CPU slots) and restarting any that dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from runner import environment
from runner.sandbox.jail import RUNNER_ROOT

log = logging.getLogger("runner.judge.worker.supervisor")


@dataclass
class WorkerSpec:
    accelerator: str
    gpu: Optional[int] = None
    cpu_slot: Optional[str] = None
    extra_args: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"gpu{self.gpu}" if self.gpu is not None else f"cpu{self.cpu_slot}"

    def argv(self, url: str) -> List[str]:
        where = ["--gpu", str(self.gpu)] if self.gpu is not None else ["--cpu", str(self.cpu_slot)]
        return [sys.executable, "-m", "runner.judge.worker", "--url", url,
                "--accelerator", self.accelerator, *where, "--parent-pid", str(os.getpid()),
                *self.extra_args]


def plan_workers(setting: str, accelerator_for_gpu, cpu_accelerator: str) -> List[WorkerSpec]:
    """What ``workers: auto | none | cpu:N | gpus:0,1`` starts on this host."""
    if setting == "none":
        return []
    if setting.startswith("cpu:"):
        return [WorkerSpec(cpu_accelerator, cpu_slot=str(k)) for k in range(int(setting[4:]))]
    if setting.startswith("gpus:"):
        return [WorkerSpec(accelerator_for_gpu(int(k)), gpu=int(k)) for k in setting[5:].split(",")]
    import torch   # lazy: serve's API process imports no torch unless it must count the GPUs

    if torch.cuda.is_available():
        return [WorkerSpec(accelerator_for_gpu(k), gpu=k) for k in range(torch.cuda.device_count())]
    return [WorkerSpec(cpu_accelerator, cpu_slot="0")]


class Supervisor:
    """Keeps one process per :class:`WorkerSpec` running until :meth:`stop`."""

    def __init__(self, specs: List[WorkerSpec], url: str, token: str,
                 env: Optional[Dict[str, str]] = None, restart_delay_s: float = 1.0,
                 on_state: Optional[Callable[[str, str, str, str], None]] = None):
        self.specs, self.url, self.restart_delay_s = specs, url, restart_delay_s
        # (label, accelerator, "starting" | "given up", reason): what /healthz shows of the
        # workers started here before they report for themselves
        self.on_state = on_state or (lambda label, accelerator, state, reason: None)
        self.env = {**environment.whole(), **(env or {}),
                    environment.JUDGE_WORKER_TOKEN.name: token}
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(RUNNER_ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.procs: Dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _start(self, k: int) -> None:
        spec = self.specs[k]
        self.procs[k] = subprocess.Popen(spec.argv(self.url), env=self.env)
        self.on_state(spec.label, spec.accelerator, "starting", "")
        log.info("started worker %s (pid %d) for %s", spec.label, self.procs[k].pid,
                 spec.accelerator)

    def start(self) -> None:
        for k in range(len(self.specs)):
            self._start(k)
        self._thread = threading.Thread(target=self._watch, daemon=True, name="judge-supervisor")
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for k, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None or self._stop.is_set():
                    continue
                if code == 2:     # it cannot serve (its slot is held elsewhere): do not spin;
                    # it said why in its own one line of this log
                    log.debug("worker %s exited with code 2; not restarting it",
                              self.specs[k].label)
                    self.on_state(self.specs[k].label, self.specs[k].accelerator, "given up",
                                  "it exited with code 2 and is not restarted (serve's log "
                                  "says why)")
                    del self.procs[k]
                    continue
                log.warning("worker %s exited with code %s; restarting it", self.specs[k].label,
                            code)
                time.sleep(self.restart_delay_s)
                if not self._stop.is_set():
                    self._start(k)

    def stop(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log.warning("worker pid %d has not exited 10 s after SIGKILL", proc.pid)
        if self._thread is not None:
            self._thread.join(timeout=2)
