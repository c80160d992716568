"""A flood of output keeps its real last lines (runner.output_tail): from a captured file (read
by offset) and from a stream fed in chunks (a ring), with the cut said in bytes and lines."""

import os

import pytest

from runner.output_tail import Captured, TailRing, capture_file, logs
from runner.report import cut_output

FLOOD = "".join(f"line {k} {'x' * 20}\n" for k in range(200_000)).encode()
LIMIT = 64 * 1024


def _check_flood(captured: Captured) -> None:
    assert captured.total_bytes == len(FLOOD)
    assert len(captured.head) + len(captured.tail) <= LIMIT
    text = captured.text("stdout")
    assert text.startswith("line 0 ")
    assert text.rstrip().endswith("line 199999 " + "x" * 20)       # the program's last line
    kept_lines = captured.head.count(b"\n") + captured.tail.count(b"\n")
    assert captured.cut_lines == 200_000 - kept_lines
    assert captured.cut_bytes == len(FLOOD) - len(captured.head) - len(captured.tail)
    assert "stdout truncated" in text and f"{captured.cut_lines:,} lines" in text
    # the tail starts at a line's start: every kept tail line is whole
    assert all(line.startswith("line ") for line in captured.tail.decode().splitlines())


def test_a_flood_in_a_file_keeps_its_head_and_its_real_last_lines(tmp_path):
    path = tmp_path / "stdout.txt"
    path.write_bytes(FLOOD)
    with open(path, "rb") as f:
        _check_flood(capture_file(f, LIMIT))
        _check_flood(capture_file(f.fileno(), LIMIT))


@pytest.mark.parametrize("chunk", [1, 7, 4096, 100_000, len(FLOOD)])
def test_a_flood_fed_in_chunks_keeps_the_same_head_and_tail(tmp_path, chunk):
    ring = TailRing(LIMIT)
    data = FLOOD if chunk > 1 else FLOOD[-300_000:]      # byte by byte: a shorter flood
    for at in range(0, len(data), chunk):
        ring.feed(data[at:at + chunk])
    got = ring.captured()
    path = tmp_path / "out"
    path.write_bytes(data)
    with open(path, "rb") as f:
        want = capture_file(f, LIMIT)
    assert (got.head, got.tail, got.total_bytes, got.cut_bytes, got.cut_lines) == \
        (want.head, want.tail, want.total_bytes, want.cut_bytes, want.cut_lines)


def test_short_output_is_kept_whole(tmp_path):
    ring = TailRing(LIMIT)
    ring.feed(b"hello\n")
    ring.feed(b"world\n")
    assert ring.captured().text() == "hello\nworld\n" and not ring.captured().cut
    path = tmp_path / "out"
    path.write_bytes(b"hello\nworld\n")
    with open(path, "rb") as f:
        assert capture_file(f, LIMIT).text() == "hello\nworld\n"


def test_the_text_report_then_shows_the_programs_last_lines(tmp_path):
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    out.write_bytes(FLOOD)
    err.write_bytes(b"")
    with open(out, "rb") as o, open(err, "rb") as e:
        text = logs(o, e, LIMIT)
    assert text.startswith("[stdout]\nline 0 ")
    shown = cut_output(text)
    assert shown.splitlines()[-1] == "line 199999 " + "x" * 20
    assert "line 199990 " in shown
    os.remove(out)
