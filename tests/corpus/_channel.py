"""What a hostile submission does to find the grader's report pipe: every pipe it holds open
for writing (the descriptor number is on no command line, but /proc/self/fd lists them)."""
import json
import os


def report_pipes():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                flags = int(next(l for l in info if l.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration, ValueError):
            continue
        if flags & 0o3 == os.O_WRONLY:
            found.append(int(fd))
    return found


def forge(*records):
    """Write each record as a JSON line to every report pipe."""
    data = b"".join((json.dumps(r) + "\n").encode() for r in records)
    for fd in report_pipes():
        try:
            os.write(fd, data)
        except OSError:
            pass
