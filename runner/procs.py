"""Child processes that may never finish: finding and killing a whole process tree, waiting
with a bound, and reading a child's pipe without ever blocking.

Everything here is written for a child that is stuck in native code (a CUDA call, a C loop
holding the GIL, ``pause()``), ignores SIGTERM and SIGINT, has started descendants in sessions
of their own (``setsid``) that keep its pipes open, or does not exit for seconds after SIGKILL
(the kernel closes its files, and the GPU driver tears its context down, before the process
can be reaped). No function here waits without a timeout.

Linux: the process table is read from ``/proc``; elsewhere only process groups are killed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import selectors
import signal
import threading
import time
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


class Proc(NamedTuple):
    ppid: int
    pgid: int
    sid: int
    state: str


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants of this process are re-parented to it (not to init), so that a
    grandchild that double-forks into a session of its own stays findable and killable."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def is_subreaper() -> bool:
    """Whether orphans are re-parented to this process (:func:`become_subreaper`)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
            return False
        return flag.value != 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Deliver ``sig`` to this process when the thread that started it exits."""
    return _prctl(PR_SET_PDEATHSIG, int(sig))


def set_dumpable(dumpable: bool) -> bool:
    """Whether processes of the same user may read and write this one's memory (/proc/N/mem)
    and trace it; off, only a process with CAP_SYS_PTRACE may."""
    return _prctl(PR_SET_DUMPABLE, int(dumpable))


def when_parent_dies(parent: int, on_gone, interval: float = 0.5,
                     stop: Optional[threading.Event] = None) -> threading.Thread:
    """Call ``on_gone()`` from a daemon thread once this process's parent is no longer
    ``parent`` (it died, and this process was re-parented); ``stop`` ends the watch."""
    def watch() -> None:
        while not (stop.wait(interval) if stop is not None else time.sleep(interval)):
            if os.getppid() != parent:
                on_gone()
                return

    thread = threading.Thread(target=watch, daemon=True, name=f"watch-parent-{parent}")
    thread.start()
    return thread


def _stat_fields() -> Iterator[Tuple[int, List[bytes]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every visible process;
    field k of proc(5) is at index k - 3. Nothing without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(entry), fields


def process_table() -> Dict[int, Proc]:
    """pid -> (ppid, pgid, sid, state) of every process visible in /proc ({} without /proc)."""
    table: Dict[int, Proc] = {}
    for pid, fields in _stat_fields():
        try:
            table[pid] = Proc(int(fields[1]), int(fields[2]), int(fields[3]),
                              fields[0].decode("ascii", "replace"))
        except (ValueError, IndexError):
            continue
    return table


class TreeUsage(NamedTuple):
    rss_bytes: int
    processes: int
    threads: int


def tree_usage(root: int) -> TreeUsage:
    """Resident memory, processes and threads of ``root`` and every descendant (a jail's
    PID namespace: setsid or double-forked processes stay below its init)."""
    fields_of: Dict[int, List[bytes]] = dict(_stat_fields())
    children: Dict[int, List[int]] = {}
    for pid, fields in fields_of.items():
        try:
            children.setdefault(int(fields[1]), []).append(pid)
        except (ValueError, IndexError):
            continue
    rss = procs_n = threads = 0
    frontier = [root] if root in fields_of else []
    seen = set(frontier)
    while frontier:
        pid = frontier.pop()
        fields = fields_of[pid]
        try:
            rss += int(fields[21])
            threads += int(fields[17])
        except (ValueError, IndexError):
            pass
        procs_n += 1
        for child in children.get(pid, ()):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return TreeUsage(rss * os.sysconf("SC_PAGE_SIZE"), procs_n, threads)


def folder_usage(path: str, max_entries: int = 200_000) -> Tuple[int, int]:
    """(bytes, entries) under ``path``, without following links; stops counting at
    ``max_entries`` (a folder of millions of files is over any limit anyway)."""
    total = entries = 0
    stack = [path]
    while stack and entries < max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total, entries


def descendants(pid: int, table: Optional[Dict[int, Proc]] = None) -> List[int]:
    """Every descendant of ``pid``, parents before their children."""
    table = process_table() if table is None else table
    children: Dict[int, List[int]] = {}
    for p, info in table.items():
        children.setdefault(info.ppid, []).append(p)
    out: List[int] = []
    frontier = [pid]
    seen = {pid}
    while frontier:
        nxt = []
        for parent in frontier:
            for child in children.get(parent, ()):
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    nxt.append(child)
        frontier = nxt
    return out


def is_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie has exited; only its status is left)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not os.path.isdir("/proc")   # without /proc a zombie cannot be told apart


def _send(pid: int, sig: int, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, sig)
        return True
    except (ProcessLookupError, PermissionError, OSError):
        return False


def kill_tree(root: Optional[int], sig: int = signal.SIGKILL, include_root: bool = True,
              groups: Iterable[int] = (), sessions: Iterable[int] = (),
              passes: int = 4) -> Set[int]:
    """Send ``sig`` to every live descendant of ``root`` (children before their parents, so
    that while ``root`` lives, orphans are re-parented to it and found on the next pass), then
    to ``root``, and to every process left in ``groups`` or ``sessions`` (descendants that
    were orphaned to init, or that left the tree). ``root`` None: an exited (reaped) process
    whose pid may be reused, so only its groups and sessions. Returns the pids signalled.
    Never waits."""
    me = os.getpid()
    groups = set(groups) - {os.getpgrp()}
    sessions = set(sessions) - {os.getsid(0)}
    signalled: Set[int] = set()

    def sweep() -> None:
        for _ in range(max(1, passes)):
            table = process_table()
            tree = descendants(root, table) if root is not None else []
            targets = [p for p in reversed(tree)
                       if p != me and table[p].state != "Z" and p not in signalled]
            chosen = set(targets)
            targets += [p for p, info in table.items()
                        if p not in (me, root) and p not in signalled and p not in chosen
                        and info.state != "Z" and (info.pgid in groups or info.sid in sessions)]
            for p in targets:
                if _send(p, sig):
                    signalled.add(p)
            if not targets:
                return

    sweep()
    if include_root and root is not None and root != me and _send(root, sig):
        signalled.add(root)
        sweep()                  # what ``root`` started between the last pass and its signal
    for g in groups:
        if _send(g, sig, group=True):
            signalled.add(g)
    return signalled


def wait_exited(proc, timeout: float) -> bool:
    """Wait up to ``timeout`` s for a :class:`subprocess.Popen` to exit and be reaped."""
    try:
        proc.wait(timeout=max(0.0, timeout))
        return True
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired (or an interrupted wait)
        return proc.poll() is not None


def wait_gone(pids: Iterable[int], timeout: float, interval: float = 0.05) -> List[int]:
    """Wait up to ``timeout`` s for ``pids`` to exit; returns those still alive."""
    remaining = [p for p in pids if is_alive(p)]
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        time.sleep(interval)
        remaining = [p for p in remaining if is_alive(p)]
    return remaining


def reap_later(proc) -> None:
    """Reap ``proc`` in a daemon thread whenever it finally exits (no zombie is left behind,
    and nobody waits for it)."""
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()


def reap_zombie_children(skip: Sequence[int] = ()) -> int:
    """Reap this process's exited children that no :class:`subprocess.Popen` owns (orphans
    re-parented to a subreaper). Returns how many were reaped. Never blocks."""
    reaped = 0
    me = os.getpid()
    for pid, info in process_table().items():
        if info.ppid != me or info.state != "Z" or pid in skip:
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
        except ChildProcessError:
            pass
    return reaped


class LineReader:
    """Complete lines from a pipe's read end, read without blocking (no thread, nothing that
    can hang when the writer is stuck or a descendant keeps the pipe open)."""

    def __init__(self, fd: int, max_line: int = 1 << 20):
        self.fd, self.max_line = fd, max_line
        os.set_blocking(fd, False)
        self._buf = bytearray()
        self.eof = False
        self._sel = selectors.DefaultSelector()
        self._sel.register(fd, selectors.EVENT_READ)

    def read(self, timeout: float, max_lines: int = 256) -> List[bytes]:
        """Up to ``max_lines`` lines (each with its newline; a line longer than ``max_line``
        comes in pieces), waiting at most ``timeout`` s for the first data."""
        lines = self._take(max_lines)
        if lines or self.eof:
            return lines
        if self._sel.select(timeout):
            self._fill()
        return self._take(max_lines)

    def _fill(self, want: int = 0) -> None:
        for _ in range(64):              # at most 4 MiB at a time (more for announced data)
            try:
                chunk = os.read(self.fd, max(65536, min(want, 1 << 22)))
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self.eof = True
                return
            if not chunk:
                self.eof = True
                return
            self._buf += chunk
            want -= len(chunk)
            if len(self._buf) > 4 * self.max_line and want <= 0:
                return

    def _take(self, max_lines: int) -> List[bytes]:
        out: List[bytes] = []
        while len(out) < max_lines:
            cut = self._buf.find(b"\n", 0, self.max_line)
            if cut >= 0:
                out.append(bytes(self._buf[:cut + 1]))
                del self._buf[:cut + 1]
            elif len(self._buf) >= self.max_line:
                out.append(bytes(self._buf[:self.max_line]))
                del self._buf[:self.max_line]
            elif self.eof and self._buf:
                out.append(bytes(self._buf))
                self._buf.clear()
            else:
                break
        return out

    def read_exact(self, nbytes: int, deadline: float) -> Optional[bytes]:
        """The next ``nbytes`` bytes (raw data that follows a line), or None when the pipe
        ends first or ``deadline`` (time.monotonic) passes."""
        while len(self._buf) < nbytes and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self._sel.select(min(left, 0.5)):
                self._fill(want=nbytes - len(self._buf))
        if len(self._buf) < nbytes:
            if self.eof:
                self._buf.clear()        # a cut-off array is nobody's next line
            return None
        data = bytes(self._buf[:nbytes])
        del self._buf[:nbytes]
        return data

    @property
    def finished(self) -> bool:
        """EOF was read and every line has been taken."""
        return self.eof and not self._buf

    def close(self) -> None:
        try:
            self._sel.close()
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass


class TailReader(LineReader):
    """The last ``keep`` bytes written to a pipe (a child's stderr), read without blocking."""

    def __init__(self, fd: int, keep: int = 16384):
        super().__init__(fd, max_line=keep)
        self.keep = keep

    def pump(self, timeout: float = 0.0) -> None:
        if not self.eof and self._sel.select(timeout):
            self._fill()
            if len(self._buf) > self.keep:
                del self._buf[:len(self._buf) - self.keep]

    def text(self) -> str:
        return bytes(self._buf[-self.keep:]).decode("utf-8", "replace")
