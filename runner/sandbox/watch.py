"""Watching the jailed child of a grading: its messages read as they come (each checked by
:mod:`runner.protocol`, then given to the grader's :class:`Conversation`, whose commands go
back), the limits polled on the whole jail, and how it ended explained as a verdict.

Nothing here waits on the child without a bound (see :mod:`runner.procs`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol as TypingProtocol, Tuple

from runner import procs, protocol
from runner.policy import MAX_PROGRESS, QUIET_MAX_S
from runner.protocol import Message, ProtocolViolation, Verdict

if TYPE_CHECKING:
    import torch
    from runner.sandbox.parent import Limits



@dataclass
class ChildOutcome:
    finished: bool = False          # the child reported "done"
    verdict: str = ""               # when the process, not the conversation, decided
    message: str = ""
    details: str = ""
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


SIGNAL_NAMES = {
    signal.SIGSEGV: "SIGSEGV (segmentation fault: a bad host pointer?)",
    signal.SIGABRT: "SIGABRT (abort)",
    signal.SIGBUS: "SIGBUS (bus error)",
    signal.SIGFPE: "SIGFPE (arithmetic error)",
    signal.SIGILL: "SIGILL (illegal instruction)",
    signal.SIGKILL: "SIGKILL",
    signal.SIGTERM: "SIGTERM",
    signal.SIGSYS: "SIGSYS (a system call the sandbox does not allow)",
}


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
           outcome: ChildOutcome) -> None:
    """Read the child's messages until it ends, breaks the protocol or passes a limit; the
    jail is dead, or reported as not yet reaped, when this returns (even on Ctrl-C).
    ``scratch``: the host folder an unjailed child writes in, whose size is polled (a jail's
    scratch space is a tmpfs the kernel caps, never looked into from here)."""
    started = time.monotonic()
    deadline = started + limits.startup_s
    phase, killed_for = "starting", None
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
                        outcome.notes += [str(n)[:300] for n in payload.get("notes", [])]
                    if kind == protocol.READY:
                        deadline = time.monotonic() + limits.timeout_s
                        phase = "loading"
                    if kind == protocol.DONE:
                        outcome.finished = True
                    tensors = read_tensors(reader, tensor_names,
                                           conversation.expected_tensors(kind, payload), deadline)
                    if tensors is None:
                        if time.monotonic() > deadline:
                            killed_for = "time"
                        break               # the child's data ended: its exit decides
                    commands = conversation.on_message(Message(kind, payload, tensors), received)
                    _send(command_w, commands)
                except (ValueError, UnicodeDecodeError):
                    killed_for = "protocol"
                    outcome.message = "a line on the report channel that is not JSON"
                except ProtocolViolation as exc:
                    killed_for = "protocol"
                    outcome.message = str(exc)
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
                killed_for = "time"
                break
            elif _quiet(conversation, now, quiet):
                continue            # limits are polled again once the grader's clock stops
            elif now > next_usage_check:
                next_usage_check = now + 0.2
                usage = procs.tree_usage(proc.pid)
                if usage.rss_bytes > limits.host_memory_bytes:
                    killed_for = "memory"
                elif usage.processes > limits.max_processes:
                    killed_for = "processes"
                elif usage.threads > limits.max_threads:
                    killed_for = "threads"
                if killed_for:
                    break
            if scratch and now > next_disk_check and not _quiet(conversation, now, quiet):
                next_disk_check = now + 1.0
                used, entries = procs.folder_usage(str(scratch))
                if used > limits.disk_bytes or entries >= 200_000:
                    killed_for = "disk"
                    break
    finally:
        # nothing of the submission outlives its grading: the jail's tree (its first process
        # takes the PID namespace with it), its process group and session, with SIGKILL
        procs.kill_tree(proc.pid if proc.poll() is None else None, groups=[proc.pid],
                        sessions=[proc.pid])
        if not procs.wait_exited(proc, limits.kill_wait_s):
            procs.reap_later(proc)
            outcome.notes.append(f"the submission's process had not exited "
                                 f"{limits.kill_wait_s:g} s after it was killed (a GPU context "
                                 f"still being torn down?)")
    if not outcome.finished or killed_for:
        outcome.finished = False
        _explain_exit(outcome, proc.returncode, killed_for, phase, limits)


def _quiet(conversation: Conversation, now: float, since: List[float]) -> bool:
    """Whether to skip polling the limits now: the grader is timing something, for at most
    QUIET_MAX_S at a stretch (a submission cannot hold the watcher off its limits longer)."""
    if not conversation.timing_sensitive:
        since.clear()
        return False
    if not since:
        since.append(now)
    return now - since[0] < QUIET_MAX_S


def _explain_exit(outcome: ChildOutcome, returncode: Optional[int], killed_for: Optional[str],
                  phase: str, limits: Limits) -> None:
    during = f" (while {phase})" if phase else ""
    if killed_for == "protocol":
        outcome.verdict = Verdict.REJECTED.value
        outcome.message = f"{protocol.INTERFERENCE}: {outcome.message}"
    elif killed_for == "time":
        outcome.verdict = Verdict.TIME_LIMIT_EXCEEDED.value
        limit = limits.startup_s if phase == "starting" else limits.timeout_s
        outcome.message = (f"grading did not finish within the limit of {limit:g} s"
                           f"{during}: a loop or kernel that never ends?")
    elif killed_for == "memory":
        outcome.verdict = Verdict.MEMORY_LIMIT_EXCEEDED.value
        outcome.message = (f"the submission used more than {limits.host_memory_bytes / 2**30:.1f} GiB "
                           f"of host memory, counting every process it started{during}")
    elif killed_for == "processes":
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission ran more than {limits.max_processes} processes at "
                           f"once{during}; solutions must not fork")
    elif killed_for == "threads":
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission ran more than {limits.max_threads} threads at "
                           f"once{during}")
    elif killed_for == "disk":
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission wrote more than {limits.disk_bytes / 2**30:.1f} GiB "
                           f"(or too many files) in its working folder{during}")
    elif returncode is not None and returncode < 0:
        sig = -returncode
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission's process was killed by "
                           f"{SIGNAL_NAMES.get(sig, f'signal {sig}')}{during}")
    elif outcome.isolated and returncode is not None and returncode > 128 and phase != "starting":
        sig = returncode - 128   # bwrap reports its child's signal as 128 + n
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission's process was killed by "
                           f"{SIGNAL_NAMES.get(sig, f'signal {sig}')}{during}")
    else:
        outcome.verdict = Verdict.RUNTIME_ERROR.value
        outcome.message = (f"the submission's process exited with code {returncode}{during} "
                           f"before grading finished: does your code call os._exit() or exit()?")
