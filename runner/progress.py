"""Progress lines on stderr for a long command (a local grading, a remote submission)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

QUIET_BEFORE_HEARTBEAT_S = 5.0      # a step silent this long gets "still ..." lines
HEARTBEAT_EVERY_S = 10.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """Progress lines on stderr ("... compiling"), and while a step is silent for
    ``quiet_s`` seconds a "... still <step> (N s)" line every ``every_s`` seconds, so that a
    long step (a big case under Triton's interpreter, a slow build) never looks hung."""

    def __init__(self, write: Callable[[str], None] = None, quiet_s: float = QUIET_BEFORE_HEARTBEAT_S,
                 every_s: float = HEARTBEAT_EVERY_S):
        self._write = write or (lambda line: log(line))
        self.quiet_s, self.every_s = quiet_s, every_s
        self._lock = threading.Lock()
        self._step, self._since, self._last = "", time.monotonic(), time.monotonic()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __call__(self, message: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._step, self._since, self._last = message, now, now
            self._write(f"... {message}")

    def _beat(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                now = time.monotonic()
                quiet = now - self._last
                if self._step and quiet >= (self.quiet_s if self._last == self._since
                                            else self.every_s):
                    self._last = now
                    self._write(f"... still {self._step} ({now - self._since:.0f} s)")

    def __enter__(self) -> "Progress":
        self._thread = threading.Thread(target=self._beat, daemon=True, name="progress")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
