"""A program's captured output, bounded: its first bytes and its real last lines.

A flood (200,000 lines) must not hide how the program ended: what is kept is the head of the
stream and its tail, the bytes between them cut with a line saying how many. Two ways in:

- :func:`capture_file`: the output was written to a file (the sandbox's ``stdout.txt``); the
  head and the tail are read by offset, the middle is never read into memory (only its lines are
  counted, up to :data:`COUNT_LINES_UP_TO` bytes of it);
- :class:`TailRing`: the output arrives in chunks (a pipe); ``feed`` keeps the head and a ring of
  the last bytes, so memory stays bounded however much is written.

Both give a :class:`Captured`, whose :meth:`Captured.text` is what a report shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Optional, Union

TAIL_SHARE = 4                   # a quarter of the limit is the tail, the rest the head
COUNT_LINES_UP_TO = 256 * 2**20  # the cut middle's lines are counted up to this many bytes
_CHUNK = 4 * 2**20


@dataclass
class Captured:
    head: bytes
    tail: bytes                  # the last bytes, from the start of a line; b"" when not cut
    total_bytes: int             # everything the program wrote
    cut_bytes: int = 0           # between the head and the tail
    cut_lines: Optional[int] = None   # newlines in the cut bytes (None: not counted)

    @property
    def cut(self) -> bool:
        return self.cut_bytes > 0

    def text(self, label: str = "output") -> str:
        """The kept output as text: the head, a line saying what was cut, the tail."""
        head = self.head.decode("utf-8", errors="replace")
        if not self.cut:
            return head + self.tail.decode("utf-8", errors="replace")
        lines = f" ({self.cut_lines:,} lines)" if self.cut_lines is not None else ""
        note = (f"[... {label} truncated: {self.cut_bytes:,} bytes{lines} cut here, of "
                f"{self.total_bytes:,}; the first {len(self.head):,} and the last "
                f"{len(self.tail):,} bytes are kept]")
        return (head.rstrip("\n") + "\n" + note + "\n"
                + self.tail.decode("utf-8", errors="replace"))


def split_limit(limit: int) -> "tuple[int, int]":
    """(head bytes, tail bytes) of a ``limit``."""
    tail = max(0, limit // TAIL_SHARE)
    return limit - tail, tail


def _line_start(tail: bytes) -> bytes:
    """``tail`` from the first byte after its first newline (a cut line is dropped), unless
    it holds no newline at all (one long line: its end is kept)."""
    at = tail.find(b"\n")
    return tail[at + 1:] if 0 <= at < len(tail) - 1 else tail


def capture_file(f: Union[int, BinaryIO], limit: int) -> Captured:
    """The head and the real tail of the output written to ``f`` (an open file or its
    descriptor; read by offset, so a file the child still shares is fine), ``limit`` bytes in
    all."""
    fd = f if isinstance(f, int) else f.fileno()
    try:
        size = os.fstat(fd).st_size
        if size <= limit:
            return Captured(os.pread(fd, size, 0), b"", size)
        head_bytes, tail_bytes = split_limit(limit)
        head = os.pread(fd, head_bytes, 0)
        tail = _line_start(os.pread(fd, tail_bytes, size - tail_bytes)) if tail_bytes else b""
    except OSError:
        return Captured(b"", b"", 0)
    start, end = len(head), size - len(tail)
    lines: Optional[int] = None
    if end - start <= COUNT_LINES_UP_TO:
        lines, at = 0, start
        while at < end:
            chunk = os.pread(fd, min(_CHUNK, end - at), at)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            at += len(chunk)
    return Captured(head, tail, size, end - start, lines)


class TailRing:
    """Output fed in chunks, kept bounded: the first bytes, and a ring of the last ones."""

    def __init__(self, limit: int):
        self.head_bytes, self.tail_bytes = split_limit(limit)
        self.head = bytearray()
        self._ring = bytearray(self.tail_bytes)
        self._at = 0                 # where the next byte goes in the ring
        self._filled = 0
        self.total = 0
        self._newlines_past_head = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_bytes - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self._newlines_past_head += data.count(b"\n")
        n = self.tail_bytes
        if n == 0:
            return
        if len(data) >= n:           # the chunk alone fills the ring
            self._ring[:] = data[-n:]
            self._at, self._filled = 0, n
            return
        first = min(len(data), n - self._at)
        self._ring[self._at:self._at + first] = data[:first]
        rest = len(data) - first
        if rest:
            self._ring[:rest] = data[first:]
        self._at = (self._at + len(data)) % n
        self._filled = min(n, self._filled + len(data))

    def _tail(self) -> bytes:
        if self._filled < self.tail_bytes:
            return bytes(self._ring[:self._filled])
        return bytes(self._ring[self._at:] + self._ring[:self._at])

    def captured(self) -> Captured:
        raw_tail = self._tail()
        past_head = self.total - len(self.head)
        if past_head <= len(raw_tail):         # nothing was cut
            return Captured(bytes(self.head), raw_tail, self.total)
        tail = _line_start(raw_tail)
        cut = past_head - len(tail)
        lines = self._newlines_past_head - tail.count(b"\n")
        return Captured(bytes(self.head), tail, self.total, cut, lines)


def logs(stdout: Union[int, BinaryIO], stderr: Union[int, BinaryIO], limit: int) -> str:
    """The report's ``logs`` from the two captured files: each stream's head and real tail
    under a ``[stdout]`` / ``[stderr]`` label (the sandbox's ``_logs``, keeping the tail)."""
    parts = []
    for label, f in (("stdout", stdout), ("stderr", stderr)):
        text = capture_file(f, limit).text(label)
        if text.strip():
            parts.append(f"[{label}]\n{text.rstrip()}")
    return "\n".join(parts)
