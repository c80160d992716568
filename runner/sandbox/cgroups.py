"""One cgroup per grading job, so that the kernel counts and enforces memory and processes.

A job's memory is all the kernel charges to its cgroup: anonymous memory, memfds and other
shmem (tmpfs, ``/dev/shm``) mapped or not, page cache, kernel memory. Past ``memory_bytes`` the
kernel's OOM killer kills in the group (no swap); past ``max_pids`` tasks, fork and clone fail.
Nothing is polled. Afterwards the group's counters say what happened.

cgroup v2 and v1 (separate ``memory`` and ``pids`` hierarchies, as in systemd's hybrid mode)
both work. Job groups go under ``$GRADER_CGROUP`` when set (a cgroup path, absolute or relative
to each hierarchy's root), else under this process's own cgroup (v1; v2 when its children can
have the controllers), else, as root on v2, under a ``grader`` group at the hierarchy's root
(this process is never moved). The limits are tried once with a probe process (some sandboxes,
gVisor's, show cgroup files that enforce nothing); where no group works, :func:`availability`
says why and :func:`require` raises :class:`CgroupUnavailable`.

A job's first process joins the group before it runs anything: :meth:`JobCgroup.wrap` prefixes
the command with a shell that writes itself into each hierarchy's ``cgroup.procs`` and then
execs the command, so bubblewrap and all it forks start inside. The jail shows no
``/sys/fs/cgroup``, so the files read here are the kernel's own; reads are bounded anyway.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from runner import environment

MOUNTINFO = "/proc/self/mountinfo"
PROC_CGROUP = "/proc/self/cgroup"
CONTROLLERS = ("memory", "pids")
READ_LIMIT = 64 * 1024
KILL_SECONDS = 2.0          # kill_all's bound: SIGKILL rounds until cgroup.procs is empty
REMOVE_SECONDS = 2.0        # remove's bound: rmdir retries while the group empties
JOIN_FAILED = 125           # the exit status of wrap's prefix when it cannot join the group
# $0 names the prefix in error messages; then the cgroup.procs files, "--", the command
JOIN_SCRIPT = ('while [ $# -gt 0 ] && [ "$1" != -- ]; do '
               'echo 0 > "$1" || { echo "$0: cannot join the cgroup of $1" >&2; exit 125; }; '
               'shift; done; shift; exec "$@"')


class CgroupUnavailable(RuntimeError):
    """No cgroup can be made for a job here; the message says what is missing and what to do."""


class CgroupError(RuntimeError):
    """A job's cgroup could not be set up (made, limited) although cgroups are available."""


def _read(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(READ_LIMIT).decode("utf-8", "replace")


def _keyed(path: Path) -> Dict[str, int]:
    """A flat-keyed file ("key value" lines: memory.events, pids.events, memory.oom_control)."""
    try:
        pairs = [line.split() for line in _read(path).splitlines()]
    except OSError:
        return {}
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def _number(path: Path) -> Optional[int]:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return None


def _mounts(mountinfo: str) -> Tuple[Optional[Tuple[Path, str]], Dict[str, Tuple[Path, str]]]:
    """(the cgroup2 mount, {v1 controller: mount}), each mount as (mount point, its root)."""
    v2: Optional[Tuple[Path, str]] = None
    v1: Dict[str, Tuple[Path, str]] = {}
    for line in _read(Path(mountinfo)).splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        point, root = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f)
                       for f in (fields[4], fields[3]))     # mountinfo escapes spaces as \040
        mount = (Path(point), root)
        if tail[0] == "cgroup2" and v2 is None:
            v2 = mount
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in CONTROLLERS and option not in v1:
                    v1[option] = mount
    return v2, v1


def _own_paths(proc_cgroup: str) -> Dict[str, str]:
    """{"" (v2) or a v1 controller: this process's cgroup path} from /proc/self/cgroup."""
    paths: Dict[str, str] = {}
    for line in _read(Path(proc_cgroup)).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _under(mount: Tuple[Path, str], path: str) -> Path:
    """The directory of cgroup ``path`` (as /proc/self/cgroup names it) in a mount."""
    point, root = mount[0], mount[1].rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return point / path.lstrip("/")


def _relative_to_mount(base: str, mounts: Sequence[Tuple[Path, str]]) -> str:
    """GRADER_CGROUP as a path inside the hierarchy (a mount point prefix is taken off)."""
    for point, _ in mounts:
        try:
            relative = str(Path(base).relative_to(point))
            return "/" if relative == "." else "/" + relative
        except ValueError:
            continue
    return base


def _enable(group: Path) -> Optional[str]:
    """Give ``group``'s children memory and pids (v2); None, or why not."""
    available = _read(group / "cgroup.controllers").split()
    missing = [c for c in CONTROLLERS if c not in available]
    if missing:
        return f"{group} lacks the {' and '.join(missing)} controller (cgroup.controllers)"
    if all(c in _read(group / "cgroup.subtree_control").split() for c in CONTROLLERS):
        return None
    try:
        (group / "cgroup.subtree_control").write_text(" ".join("+" + c for c in CONTROLLERS))
    except OSError as e:
        why = ("it holds processes (a v2 cgroup whose children get controllers must hold none)"
               if e.errno == errno.EBUSY else e.strerror)
        return f"cannot enable memory and pids in {group}/cgroup.subtree_control: {why}"
    return None


def _choose_v2(mount: Tuple[Path, str], own: str, env_base: Optional[str]) -> Tuple[Optional[Path], str]:
    root = mount[0]
    if env_base:
        base = _under(mount, _relative_to_mount(env_base, [mount]))
        try:
            base.mkdir(exist_ok=True)
        except OSError as e:
            return None, f"GRADER_CGROUP={env_base}: cannot make {base}: {e.strerror}"
        why = _enable(base)
        return (base, "") if why is None else (None, f"GRADER_CGROUP={env_base}: {why}")
    reasons = []
    own_dir = _under(mount, own)
    if own_dir.is_dir():
        why = _enable(own_dir)
        if why is None:
            return own_dir, ""
        reasons.append(why)
    if own_dir != root and os.access(root / "cgroup.subtree_control", os.W_OK):
        why = _enable(root)
        if why is None:
            try:
                (root / "grader").mkdir(exist_ok=True)
                why = _enable(root / "grader")
            except OSError as e:
                why = f"cannot make {root / 'grader'}: {e.strerror}"
        if why is None:
            return root / "grader", ""
        reasons.append(why)
    return None, ("cgroup v2 without a delegated subtree: " + "; ".join(reasons)
                  + f"; run the judge as root, or under systemd with Delegate=yes and"
                  + f" DelegateSubgroup=, or set GRADER_CGROUP to a cgroup that holds no processes")


def _choose_v1(mounts: Dict[str, Tuple[Path, str]], own: Dict[str, str],
               env_base: Optional[str]) -> Tuple[Optional[Dict[str, Path]], str]:
    bases: Dict[str, Path] = {}
    for c in CONTROLLERS:
        base = _under(mounts[c], _relative_to_mount(env_base, list(mounts.values()))
                      if env_base else own.get(c, "/"))
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return None, f"cgroup v1: cannot make {base}: {e.strerror}"
        if not os.access(base, os.W_OK):
            return None, (f"cgroup v1: {base} is not writable: run the judge as root, or chown"
                          f" a group to this user and set GRADER_CGROUP to it")
        bases[c] = base
    return bases, ""


class _Setup(NamedTuple):
    """Where job groups go: ``version`` 1 or 2 with a base folder per controller, or 0 and why."""
    version: int
    bases: Dict[str, Path]
    reason: str


def detect(mountinfo: str = MOUNTINFO, proc_cgroup: str = PROC_CGROUP,
           env_base: Optional[str] = None) -> _Setup:
    """Find the cgroup hierarchies and the base folder(s) for job groups (makes nothing but a
    base folder); ``env_base`` defaults to ``$GRADER_CGROUP``."""
    if env_base is None:
        env_base = environment.cgroup_base()
    try:
        v2, v1 = _mounts(mountinfo)
        own = _own_paths(proc_cgroup)
    except OSError as e:
        return _Setup(0, {}, f"cannot read the cgroup mounts: {e}")
    try:
        if v2 is not None and all(c in _read(v2[0] / "cgroup.controllers").split() for c in CONTROLLERS):
            base, why = _choose_v2(v2, own.get("", "/"), env_base)
            return _Setup(2, {c: base for c in CONTROLLERS}, "") if base else _Setup(0, {}, why)
        if all(c in v1 for c in CONTROLLERS):
            bases, why = _choose_v1(v1, own, env_base)
            return _Setup(1, bases, "") if bases else _Setup(0, {}, why)
    except OSError as e:
        return _Setup(0, {}, f"cgroup files unreadable: {e}")
    found = (["cgroup2 at %s" % v2[0]] if v2 else []) + [f"v1 {c} at {m[0]}" for c, m in v1.items()]
    return _Setup(0, {}, "no cgroup hierarchy with both the memory and the pids controller (found: "
                  + (", ".join(found) or "none") + "); mount cgroup v2 with them enabled"
                  + " (the kernel's and systemd's default) or the v1 memory and pids hierarchies")


_cached: Optional[Tuple[bool, str, Optional[_Setup]]] = None
_lock = threading.Lock()

PROBE = ("import os\nforked = 0\nfor _ in range(8):\n    try:\n        if os.fork() == 0: os._exit(0)\n"
         "        forked += 1\n    except OSError:\n        break\nprint(forked, flush=True)\n"
         "fd = os.memfd_create('probe')\nfor _ in range(128): os.write(fd, b'x' * (1 << 20))\n"
         "print('survived', flush=True)\n")


def _prove(setup: _Setup) -> str:
    """Try the limits once (64 MiB, 4 tasks) with a probe process: "" where the kernel held
    them, else what failed (some sandboxes, gVisor's, show cgroup files that enforce nothing)."""
    with JobCgroup._make(setup, "probe", 64 << 20, 4) as probe:
        done = subprocess.run(probe.wrap([sys.executable, "-c", PROBE]), timeout=60,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        lines = done.stdout.split()
        if done.returncode == JOIN_FAILED or not lines:
            return (f"a probe could not join {', '.join(map(str, probe.paths))}"
                    f" (exit {done.returncode}: {done.stderr.strip()[-300:]})")
        if lines[0] == "8":
            return "pids.max is not enforced here (a probe forked 8 children under a max of 4)"
        if "survived" in lines or done.returncode != -signal.SIGKILL:
            return (f"the memory limit is not enforced here (a probe held 128 MiB of memfd under a"
                    f" 64 MiB limit; exit {done.returncode})")
        if not probe.oom_killed():
            return f"the kernel's OOM kill does not show in {probe.dirs['memory']} ({probe.counters()})"
    return ""


def _setup() -> Tuple[bool, str, Optional[_Setup]]:
    global _cached
    with _lock:
        if _cached is None:
            setup = detect()
            why = setup.reason
            if setup.version:
                try:
                    why = _prove(setup)
                except (OSError, CgroupError, subprocess.SubprocessError) as e:
                    why = f"cgroup v{setup.version} probe failed: {e}"
                if why:
                    why = f"cgroup v{setup.version} unusable: {why}"
            _cached = (not why, why, None if why else setup)
        return _cached


def availability() -> Tuple[bool, str]:
    """(True, "") where job cgroups work here (tried once, then cached), else (False, why)."""
    ok, why, _ = _setup()
    return ok, why


def describe() -> str:
    """One line for the report."""
    ok, why, setup = _setup()
    if not ok or setup is None:
        return f"memory and processes not enforced by the kernel: {why}"
    where = ", ".join(sorted({str(p) for p in setup.bases.values()}))
    return (f"memory and processes enforced by cgroup v{setup.version} (memory, pids)"
            f" under {where}")


class JobCgroup:
    """One job's cgroup (v2: one folder; v1: one in each of the memory and pids hierarchies).

    Use as a context manager: leaving it kills what is left and removes the group."""

    def __init__(self, version: int, dirs: Dict[str, Path], memory_bytes: int, max_pids: int):
        self.version, self.dirs = version, dirs
        self.memory_bytes, self.max_pids = memory_bytes, max_pids
        self.paths: List[Path] = sorted(set(dirs.values()))

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int) -> "JobCgroup":
        """Make a fresh group with these limits; :class:`CgroupUnavailable` where none can be had."""
        ok, why, setup = _setup()
        if not ok or setup is None:
            raise CgroupUnavailable(why)
        return cls._make(setup, name, memory_bytes, max_pids)

    @classmethod
    def _make(cls, setup: _Setup, name: str, memory_bytes: int, max_pids: int) -> "JobCgroup":
        if memory_bytes <= 0 or max_pids <= 0:
            raise ValueError("memory_bytes and max_pids must be positive")
        leaf = "grader-%s-%d-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40], os.getpid(),
                                    secrets.token_hex(3))
        dirs = {c: setup.bases[c] / leaf for c in CONTROLLERS}
        group = cls(setup.version, dirs, memory_bytes, max_pids)
        try:
            for path in group.paths:
                path.mkdir()
            group._limit()
        except OSError as e:
            group.remove()
            raise CgroupError(f"cannot set up the job's cgroup {leaf}: {e}") from e
        return group

    def _limit(self) -> None:
        mem, pids = self.dirs["memory"], self.dirs["pids"]
        if self.version == 2:
            (mem / "memory.max").write_text(str(self.memory_bytes))
            for optional, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                if (mem / optional).exists():
                    (mem / optional).write_text(value)
        else:
            (mem / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():      # memory + swap: no swap
                (mem / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
            if (mem / "memory.swappiness").exists():                # where memsw is missing
                (mem / "memory.swappiness").write_text("0")
            if _keyed(mem / "memory.oom_control").get("oom_kill_disable"):
                (mem / "memory.oom_control").write_text("0")   # kill, never pause
        (pids / "pids.max").write_text(str(self.max_pids))

    def wrap(self, command: Sequence[str]) -> List[str]:
        """``command`` behind a prefix that joins this group and then execs it, arguments
        unchanged; the prefix exits 125 (saying why on stderr) when it cannot join."""
        procs = [str(path / "cgroup.procs") for path in self.paths]
        return ["/bin/sh", "-c", JOIN_SCRIPT, "grader-cgroup-join", *procs, "--", *command]

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) in; children it already has stay out (prefer wrap)."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> List[int]:
        """The processes in the group now."""
        found = set()
        for path in self.paths:
            try:
                found.update(int(p) for p in _read(path / "cgroup.procs").split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed in the group (v1 kernels before 4.13 lack the
        count: there, whether the group's usage reached its limit)."""
        mem = self.dirs["memory"]
        if self.version == 2:
            events = _keyed(mem / "memory.events")
            return events.get("oom_kill", 0) > 0 or events.get("oom_group_kill", 0) > 0
        control = _keyed(mem / "memory.oom_control")
        if "oom_kill" in control:
            return control["oom_kill"] > 0
        peak = _number(mem / "memory.max_usage_in_bytes") or 0
        failed = sum(_number(mem / f) or 0 for f in ("memory.failcnt", "memory.memsw.failcnt"))
        return failed > 0 and peak + (1 << 20) >= self.memory_bytes

    def peak_memory_bytes(self) -> Optional[int]:
        """The group's highest memory use (v2 kernels before 5.19 lack memory.peak: None)."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return _number(self.dirs["memory"] / name)

    def pids_limit_hit(self) -> bool:
        """Whether a fork or clone in the group failed at pids.max."""
        return _keyed(self.dirs["pids"] / "pids.events").get("max", 0) > 0

    def counters(self) -> Dict[str, Optional[int]]:
        """The raw evidence, for a report or a log."""
        mem = self.dirs["memory"]
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        found: Dict[str, Optional[int]] = {f"{name}.{k}": v for k, v in _keyed(mem / name).items()}
        for name in ("memory.failcnt", "memory.memsw.failcnt") if self.version == 1 else ():
            found[name] = _number(mem / name)
        found["peak_memory_bytes"] = self.peak_memory_bytes()
        found["pids.events.max"] = _keyed(self.dirs["pids"] / "pids.events").get("max", 0)
        return found

    def kill_all(self, seconds: float = KILL_SECONDS) -> bool:
        """Kill every process in the group; True once it is empty (within ``seconds``)."""
        deadline = time.monotonic() + seconds
        kill_file = self.dirs["memory"] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() >= deadline:
                return False
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self, seconds: float = REMOVE_SECONDS) -> bool:
        """rmdir the group, retrying while it empties (killing what is left); True when gone."""
        deadline = time.monotonic() + seconds
        for path in self.paths:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                        return False
                    self.kill_all(max(0.0, min(0.2, deadline - time.monotonic())))
                    time.sleep(0.01)
        return True

    def __enter__(self) -> "JobCgroup":
        return self

    def __exit__(self, *exc) -> None:
        self.kill_all()
        self.remove()

    def __repr__(self) -> str:
        return f"JobCgroup(v{self.version}, {', '.join(map(str, self.paths))})"
