"""Writes files outside its job folder: /tmp, /var/tmp, /dev/shm, the home folder, beside
the grader's package."""
import os

import runner

NAME = "grader-escape-probe"


def solve(A, B, C, N):
    places = ["/tmp", "/var/tmp", "/dev/shm", os.path.expanduser("~"),
              os.path.dirname(os.path.dirname(runner.__file__)), "/root", "/home"]
    for place in places:
        path = os.path.join(place, NAME)
        try:
            with open(path, "w") as f:
                f.write("escaped")
            print("wrote", path)
        except OSError as exc:
            print("refused:", path, exc)
    C.copy_(A + B)
