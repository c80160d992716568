"""The limits of one grading's jail (:class:`Limits`): plain data, set by the grader's
options and the judge's settings, enforced by :mod:`runner.sandbox.parent` (the cgroup) and
:mod:`runner.sandbox.watch` (the poll, the time), and named in the verdict's messages
(:mod:`runner.grader.verdict`). Its own module so that each of them can import it without
importing the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class Limits:
    timeout_s: float = 300.0                  # wall clock from the child's "ready", build included
    startup_s: float = 300.0                  # wall clock for the interpreter and torch to start
    host_memory_bytes: int = 16 * 2**30       # resident memory of every process in the jail
    gpu_memory_bytes: Optional[int] = None    # torch's allocator cap; None: the whole device
    max_processes: int = 64                   # processes in the jail at once
    max_threads: int = 1024                   # threads in the jail at once
    disk_bytes: int = 4 * 2**30               # the job folder's size
    output_bytes: int = 64 * 1024             # captured stdout/stderr kept in the result
    require_cgroup: bool = False              # refuse to grade where the kernel cannot enforce
    #                                           memory and tasks (the judge)
    kill_wait_s: float = 10.0                 # after SIGKILL, wait this long for the child to be
    #                                           reaped (a GPU context's teardown), then go on
    sandbox: str = "require"                  # "require": a jail or no grading; "auto": jail
    #                                           where possible (judge --allow-unsandboxed); "off"
