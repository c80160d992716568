"""The slot's next job process, started before its job (issue 28).

A worker grades one submission at a time on its GPU. It starts the next job process *parked*
(:func:`runner.judge.worker.jobrun.park`) as soon as the current job has been handed over (or, with
``prewarm_overlap`` off, once it is done): its interpreter, torch and the grader imported, and
a parked jail of its own started (:mod:`runner.sandbox.warm`: the jail's interpreter, torch,
Triton, waiting on its command pipe). This is CPU work only: neither makes a CUDA context
while another grading may be timing on the GPU. When the current job is done and stopped, the
worker tells the parked process that the GPU is free (:meth:`Prewarm.gpu_free`), and it and
its jail make their CUDA contexts. A claimed job is handed to it (:meth:`JobProcess.hand`); it
grades that one job and is stopped like any job process. Nothing of one grading can reach the
next: each job process and each jail serves one grading, and the parked jail holds nothing of
a submission until its own is handed to it (two jails at once are as separate as the jails of
two GPUs' workers: namespaces, tmpfs, cgroup and pipes of their own).

A parked process that died, was parked longer than ``max_age_s``, or cannot take its job is
stopped and the job runs in a cold job process, as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

from runner.judge.worker.job_process import JobProcess
from runner.judge.worker.settings import WorkerSettings

log = logging.getLogger("runner.judge.worker")
PARK_MAX_AGE_S = 30 * 60.0      # a parked process older than this is replaced before use


class Prewarm:
    """At most one parked job process for a worker's slot."""

    def __init__(self, settings: WorkerSettings, max_age_s: float = PARK_MAX_AGE_S):
        self.settings = settings
        self.max_age_s = max_age_s
        self.parked: Optional[JobProcess] = None
        self.started = self.used = self.discarded = 0

    def _usable(self, job: JobProcess) -> bool:
        return (job.proc.poll() is None and not job.output_closed()
                and time.monotonic() - job.started_at < self.max_age_s)

    def ensure(self) -> None:
        """Park a job process unless a usable one is parked already."""
        if self.parked is not None and self._usable(self.parked):
            return
        self.discard()
        try:
            self.parked = JobProcess(None, self.settings)
            self.started += 1
        except OSError as exc:
            log.warning("could not park the next job process (%s); the next job starts cold", exc)

    def gpu_free(self) -> None:
        """The GPU is free (no grading on it): the parked process and its jail may make their
        CUDA contexts."""
        if self.parked is not None:
            self.parked.gpu_free()

    def pids(self) -> List[int]:
        """The parked process (a worker's sweep of a finished job's leftovers spares it)."""
        return [self.parked.pid] if self.parked is not None else []

    def take(self, spec: Dict[str, Any]) -> Optional[JobProcess]:
        """The parked job process, given ``spec``; None (it is stopped) where there is none or
        it cannot take the job: start a cold one."""
        job, self.parked = self.parked, None
        if job is None:
            return None
        if self._usable(job) and job.hand(spec):
            self.used += 1
            return job
        log.info("the parked job process %s cannot take the job (%s); starting a cold one",
                 job.pid, "exited" if job.proc.poll() is not None else "too old or gone")
        self._stop(job)
        return None

    def discard(self) -> None:
        job, self.parked = self.parked, None
        if job is not None:
            self._stop(job)

    def _stop(self, job: JobProcess) -> None:
        self.discarded += 1
        job.stop(exit_grace_s=0.0, term_grace_s=self.settings.term_grace_s,
                 kill_wait_s=self.settings.kill_wait_s)
