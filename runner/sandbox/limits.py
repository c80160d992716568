"""The limits of one grading's jail (:class:`Limits`): plain data, set by the grader's
options and the judge's settings, enforced by :mod:`runner.sandbox.parent` (the cgroup) and
:mod:`runner.sandbox.watch` (the poll, the time), and named in the verdict's messages
(:mod:`runner.grader.verdict`); its defaults are the policy's (:mod:`runner.policy`). Its own
module so that each of them can import it without importing the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from runner.policy import (DISK_BYTES, HOST_MEMORY_BYTES, KILL_WAIT_S, MAX_PROCESSES,
                           MAX_THREADS, OUTPUT_BYTES, STARTUP_LIMIT_S, TIME_LIMIT_S)


@dataclass
class Limits:
    timeout_s: float = TIME_LIMIT_S           # wall clock from the child's "ready", build included
    startup_s: float = STARTUP_LIMIT_S        # wall clock for the interpreter and torch to start
    host_memory_bytes: int = HOST_MEMORY_BYTES   # resident memory of every process in the jail
    gpu_memory_bytes: Optional[int] = None    # torch's allocator cap; None: the whole device
    max_processes: int = MAX_PROCESSES        # processes in the jail at once
    max_threads: int = MAX_THREADS            # threads in the jail at once
    disk_bytes: int = DISK_BYTES              # the job folder's size
    output_bytes: int = OUTPUT_BYTES          # captured stdout/stderr kept in the result
    require_cgroup: bool = False              # refuse to grade where the kernel cannot enforce
    #                                           memory and tasks (the judge)
    kill_wait_s: float = KILL_WAIT_S          # after SIGKILL, wait this long for the child to be
    #                                           reaped (a GPU context's teardown), then go on
    sandbox: str = "require"                  # "require": a jail or no grading; "auto": jail
    #                                           where possible (judge --allow-unsandboxed); "off"
