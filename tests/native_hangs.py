"""Submissions that never return from native code, for the sandbox's and the judge's tests.

Each is the text of a PyTorch-language solution whose ``solve`` (with the parameters given)
gets stuck in a way a Python-level signal handler cannot end: blocked in ``pause()`` with the
GIL released, spinning in C with the GIL held and SIGTERM/SIGINT ignored, ignoring and
blocking SIGTERM and SIGINT, or leaving a grandchild in a session of its own that holds every
file descriptor the submission had (its report pipe, stdout and stderr). Markers (pid files)
go to ``marker_dir`` so that the tests can check nothing survives the grading.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import List, Optional

ESCAPEE_MARK = "native-hang-escapee"

_ESCAPEE = r'''
import os, sys, time
if os.fork():
    os._exit(0)              # the intermediate exits: the grandchild is an orphan
os.setsid()                  # and leaves the submission's process group and session
with open(sys.argv[2], "w") as f:
    f.write(str(os.getpid()))
while True:
    time.sleep(1)
'''

BODIES = {
    # blocks in the C library with the GIL released; any signal would end pause(), so none
    # of SIGTERM/SIGINT reach it (ignored)
    "pause": '''
    import ctypes, signal
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    ctypes.CDLL(None).pause()
''',
    # a C loop that holds the GIL (PyDLL): no Python code runs in this process again
    "gil_spin": '''
    import ctypes, signal
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    import os
    path = {so!r}     # unjailed; in a jail, beside this file (the solution's folder is shown)
    if not os.path.exists(path):
        path = os.path.join(os.path.dirname(__file__), os.path.basename(path))
    ctypes.PyDLL(path).spin()
''',
    # ignores SIGTERM and SIGINT, and blocks them too
    "ignores_signals": '''
    import signal, time
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM, signal.SIGINT}})
    while True:
        time.sleep(0.1)
''',
    # a grandchild in its own session keeps every inherited descriptor open; then solve hangs
    "escapee": '''
    import ctypes, os, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", {escapee!r}, {mark!r}, {pidfile!r}], close_fds=False)
    while not os.path.exists({pidfile!r}):
        time.sleep(0.01)
    ctypes.CDLL(None).pause()
''',
    # the same grandchild, and the submission's own process exits at once
    "escapee_exit": '''
    import os, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", {escapee!r}, {mark!r}, {pidfile!r}], close_fds=False)
    while not os.path.exists({pidfile!r}):
        time.sleep(0.01)
    os._exit(0)
''',
}


def c_compiler() -> Optional[str]:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build_spin_library(folder: Path) -> Optional[Path]:
    """A shared library whose ``spin()`` never returns (None without a C compiler)."""
    cc = c_compiler()
    if cc is None:
        return None
    source, library = folder / "spin.c", folder / "libspin.so"
    source.write_text("void spin(void) { for (;;) { __asm__ volatile(\"\"); } }\n")
    done = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
                          capture_output=True, timeout=60)
    return library if done.returncode == 0 and library.exists() else None


def solution(kind: str, params: List[str], marker_dir: Path, so: Optional[Path] = None) -> str:
    body = BODIES[kind].format(so=str(so), escapee=_ESCAPEE, mark=ESCAPEE_MARK,
                               pidfile=str(marker_dir / f"{kind}.pid"))
    return f"def solve({', '.join(params)}):{body}"


def escapee_pid(marker_dir: Path, kind: str) -> Optional[int]:
    path = marker_dir / f"{kind}.pid"
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def is_running(pid: int) -> bool:
    """``pid`` is a live (not zombie) process started by these tests."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return ESCAPEE_MARK.encode() in f.read()
    except OSError:
        return False


def assert_gone(pid: Optional[int], timeout: float = 5.0) -> None:
    assert pid is not None, "the submission did not start its grandchild"
    deadline = time.monotonic() + timeout
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_running(pid):
        os.kill(pid, 9)
        raise AssertionError(f"the submission's grandchild (pid {pid}) outlived its grading")
