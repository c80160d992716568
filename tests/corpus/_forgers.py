"""Ways a submission rewrites the timing it reports (used by corpus entries of several
challenges): each divides every time it reports, host time included, by ``SPEEDUP``."""
import gc
import json
import os
import threading

from _channel import report_pipes

SPEEDUP = 70.0
_state = {}


def forge_timing(payload):
    payload = dict(payload)
    for key in ("median_ms", "mean_ms", "min_ms", "std_ms", "host_us"):
        if isinstance(payload.get(key), (int, float)):
            payload[key] = payload[key] / SPEEDUP
    payload["samples_ms"] = [s / SPEEDUP for s in payload.get("samples_ms", [])]
    return payload


def patch_channel():
    """Find the channel object's class through the garbage collector and wrap its send."""
    for obj in gc.get_objects():
        cls = type(obj)
        if cls.__name__ in ("PipeChannel", "MemoryChannel") and not getattr(cls, "_forged", False):
            original = cls.send

            def send(self, kind, payload, tensors=None, _original=original):
                return _original(self, kind, forge_timing(payload) if kind == "timing" else payload,
                                 tensors)

            cls.send = send
            cls._forged = True


TIMING_LINE = b'{"kind": "timing"'


def _relay(read_fd, real_fd):
    """Pass everything on at once (raw output bytes follow some lines) except a timing line,
    which is held until it is whole and then rewritten."""
    buffer = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while buffer:
            head = buffer[:len(TIMING_LINE)]
            if TIMING_LINE.startswith(head):
                if b"\n" not in buffer:
                    break
                line, buffer = buffer.split(b"\n", 1)
                try:
                    record = json.loads(line)
                    record["payload"] = forge_timing(record["payload"])
                    line = json.dumps(record).encode()
                except (ValueError, KeyError, TypeError, AttributeError):
                    pass
                os.write(real_fd, line + b"\n")
                continue
            cut = buffer.find(b"\n")
            part, buffer = (buffer, b"") if cut < 0 else (buffer[:cut + 1], buffer[cut + 1:])
            while part:
                part = part[os.write(real_fd, part):]


def swap_report_fd():
    """Put a pipe of our own where the report pipe was; a thread relays every line to the
    real pipe, rewriting the timing report on the way."""
    if _state:
        return
    _state["done"] = True
    for report in report_pipes():      # every pipe open for writing: one of them is the grader's
        real = os.dup(report)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, report)
        os.close(write_fd)
        threading.Thread(target=_relay, args=(read_fd, real), daemon=True).start()
