"""Watching the jailed child of a grading: its messages read as they come (each checked by
:mod:`runner.protocol`, then given to the grader's :class:`Conversation`, whose commands go
back), the limits polled on the whole jail, and how it ended recorded as evidence (an
:class:`Ending`: what cut it short, its exit status, what it was doing, the limits it ran
under). The verdict and its words are :mod:`runner.grader.verdict`'s.

Nothing here waits on the child without a bound (see :mod:`runner.procs`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol as TypingProtocol, Tuple

from runner import procs, protocol
from runner.policy import MAX_PROGRESS, QUIET_MAX_S
from runner.protocol import Message, ProtocolViolation

from runner.sandbox.limits import Limits

if TYPE_CHECKING:
    import torch


# what cut a child short (Ending.cause): a broken protocol, or one of the limits the watcher
# polls; the kernel's OOM kill in the job's cgroup; or its own exit before it said "done"
PROTOCOL, TIME, MEMORY, PROCESSES, THREADS, DISK = ("protocol", "time", "memory", "processes",
                                                    "threads", "disk")
KERNEL_MEMORY = "kernel_memory"
EXITED = "exited"


@dataclass
class Ending:
    """How the child of a grading ended: evidence for :func:`runner.grader.verdict.decide`."""

    finished: bool = False          # the child reported "done" and nothing cut it short
    cause: str = ""                 # when not finished: one of the causes above ('' when there
    #                                 was no process: --no-sandbox ran it in the grader's own)
    violation: str = ""             # cause PROTOCOL: what broke the protocol
    returncode: Optional[int] = None
    phase: str = ""                 # what the child last said it was doing
    limits: Optional[Limits] = None   # the limits it ran under (the verdict's message names them)
    logs: str = ""
    notes: List[str] = field(default_factory=list)
    isolated: bool = False


TensorSpec = Tuple["torch.dtype", Tuple[int, ...]]   # torch loads lazily (sandbox/warm.py)


class Conversation(TypingProtocol):
    """The trusted side of one grading: it reads each message and says what to send back."""

    def on_message(self, message: Message, received_at: float) -> List[Dict[str, Any]]: ...

    def expected_tensors(self, kind: str, payload: Dict[str, Any]) -> Dict[str, TensorSpec]:
        """The outputs (name -> dtype, shape) a message of this kind must carry, which the
        grader knows before it reads a byte of them."""

    # True while the grader times something on its own clock: the watcher then reads messages
    # as they come, without pausing to scan /proc or the job folder (which takes milliseconds)
    timing_sensitive: bool


def read_tensors(reader: procs.LineReader, names: Optional[List[str]],
                 expected: Dict[str, TensorSpec], deadline: float) -> Optional[Dict[str, torch.Tensor]]:
    """The raw arrays that follow a message's line, read as the dtypes and shapes the grader
    expects (the child only names them, in sorted order); None when the child's data ended or
    the time ran out before they all came (its exit or the time limit then decides)."""
    import torch   # lazy: a jail can be started before torch is imported (sandbox/warm.py)

    if not names:
        return {}              # the check finds no output (or the transcript refuses the message)
    if names != sorted(expected):
        raise ProtocolViolation(f"a message carrying outputs {names[:8]} instead of "
                                f"{sorted(expected)[:8]}")
    out: Dict[str, torch.Tensor] = {}
    for name in names:
        dtype, shape = expected[name]
        count = math.prod(shape)
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        data = reader.read_exact(nbytes, deadline)
        if data is None:
            return None
        flat = (torch.frombuffer(bytearray(data), dtype=dtype) if count
                else torch.empty(0, dtype=dtype))
        out[name] = flat.reshape(shape)
    return out


def _send(command_w: int, commands: List[Dict[str, Any]]) -> None:
    for cmd in commands:
        data = (json.dumps(cmd) + "\n").encode()
        try:
            os.write(command_w, data)
        except OSError:
            return      # the child is gone; its exit decides


def watch(proc: subprocess.Popen, reader: procs.LineReader, command_w: int,
          scratch: Optional[Path],
           limits: Limits, conversation: Conversation, progress: Callable[[str], None],
           ending: Ending) -> None:
    """Read the child's messages until it ends, breaks the protocol or passes a limit; the
    jail is dead, or reported as not yet reaped, when this returns (even on Ctrl-C).
    ``scratch``: the host folder an unjailed child writes in, whose size is polled (a jail's
    scratch space is a tmpfs the kernel caps, never looked into from here)."""
    started = time.monotonic()
    deadline = started + limits.startup_s
    phase, killed_for = "starting", ""
    last_forwarded = ""
    next_usage_check = next_disk_check = 0.0
    exited_at = 0.0
    forwarded = 0
    quiet: List[float] = []
    try:
        while True:
            for _ in range(64):
                lines = reader.read(timeout=0.05, max_lines=1)   # raw data may follow a line
                if not lines:
                    break
                raw = lines[0]
                received = time.perf_counter()
                try:
                    kind, payload, tensor_names = protocol.parse(json.loads(raw))
                    if kind == protocol.PROGRESS:
                        message = str(payload.get("message", ""))[:200]
                        if message != last_forwarded and forwarded < MAX_PROGRESS:
                            forwarded += 1
                            last_forwarded = message
                            progress(message)
                        phase = message
                        continue
                    if kind == protocol.SANDBOX:
                        ending.notes += [str(n)[:300] for n in payload.get("notes", [])]
                    if kind == protocol.READY:
                        deadline = time.monotonic() + limits.timeout_s
                        phase = "loading"
                    if kind == protocol.DONE:
                        ending.finished = True
                    tensors = read_tensors(reader, tensor_names,
                                           conversation.expected_tensors(kind, payload), deadline)
                    if tensors is None:
                        if time.monotonic() > deadline:
                            killed_for = TIME
                        break               # the child's data ended: its exit decides
                    commands = conversation.on_message(Message(kind, payload, tensors), received)
                    _send(command_w, commands)
                except (ValueError, UnicodeDecodeError):
                    killed_for = PROTOCOL
                    ending.violation = "a line on the report channel that is not JSON"
                except ProtocolViolation as exc:
                    killed_for = PROTOCOL
                    ending.violation = str(exc)
                if killed_for or time.monotonic() > deadline:
                    break           # a flood of messages must not hold off the time limit
            if killed_for:
                break
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                # a process the submission left behind may hold the pipe open: stop waiting soon
                if reader.finished or now - exited_at > 2.0:
                    break
            elif now > deadline:
                killed_for = TIME
                break
            elif _quiet(conversation, now, quiet):
                continue            # limits are polled again once the grader's clock stops
            elif now > next_usage_check:
                next_usage_check = now + 0.2
                usage = procs.tree_usage(proc.pid)
                if usage.rss_bytes > limits.host_memory_bytes:
                    killed_for = MEMORY
                elif usage.processes > limits.max_processes:
                    killed_for = PROCESSES
                elif usage.threads > limits.max_threads:
                    killed_for = THREADS
                if killed_for:
                    break
            if scratch and now > next_disk_check and not _quiet(conversation, now, quiet):
                next_disk_check = now + 1.0
                used, entries = procs.folder_usage(str(scratch))
                if used > limits.disk_bytes or entries >= 200_000:
                    killed_for = DISK
                    break
    finally:
        # nothing of the submission outlives its grading: the jail's tree (its first process
        # takes the PID namespace with it), its process group and session, with SIGKILL
        procs.kill_tree(proc.pid if proc.poll() is None else None, groups=[proc.pid],
                        sessions=[proc.pid])
        if not procs.wait_exited(proc, limits.kill_wait_s):
            procs.reap_later(proc)
            ending.notes.append(f"the submission's process had not exited "
                                 f"{limits.kill_wait_s:g} s after it was killed (a GPU context "
                                 f"still being torn down?)")
    if not ending.finished or killed_for:
        ending.finished = False
        ending.cause = killed_for or EXITED
        ending.returncode, ending.phase, ending.limits = proc.returncode, phase, limits


def _quiet(conversation: Conversation, now: float, since: List[float]) -> bool:
    """Whether to skip polling the limits now: the grader is timing something, for at most
    QUIET_MAX_S at a stretch (a submission cannot hold the watcher off its limits longer)."""
    if not conversation.timing_sensitive:
        since.clear()
        return False
    if not since:
        since.append(now)
    return now - since[0] < QUIET_MAX_S
