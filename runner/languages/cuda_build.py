"""The trusted side's CUDA build: nvcc runs in a jail of its own, and only the grader's own
process puts its output into the build cache.

A library is cached under ``<cache>/cuda-trusted/<key>.so``, the key hashing the source bytes,
nvcc's version, the target, every flag and the harness version (:func:`nvcc.cache_key`). No
jail ever sees that folder, neither writable nor read-only: a grading's child gets a copy of
its own library in a folder of its own (:func:`grading_copy`), shown read-only. So no grading
can plant a library that another grading loads. (The former cache folder, ``cuda``, was
writable in every grading's jail: nothing in it is believed.)

A build that is not in the cache runs in a bubblewrap jail made for it: new user, PID,
network, IPC, UTS and cgroup namespaces, no capabilities, the system's ``/usr`` (with the
CUDA toolkit and the host compiler) read-only, the source folder (a copy of exactly the bytes
hashed, made by this process) read-only at ``/build/src``, a fresh empty output folder
writable at ``/build/out``, and a size-capped tmpfs on ``/tmp`` (also HOME and TMPDIR); no
network, no GPU, no /etc beyond the loader's cache. No seccomp filter: nvcc is a compiler, not
the submission's code, and runs nothing the source says; the namespaces and the missing
capabilities are its bounds. Its time, memory, processes, output folder, file sizes and
captured output are bounded; past a bound it is killed with its whole PID namespace and the
build is a compile error saying why.

Once the jail has exited (its PID namespace is dead then), this process opens the output
folder with ``O_DIRECTORY|O_NOFOLLOW``, the library in it with ``O_NOFOLLOW|O_NONBLOCK``
relative to that folder, checks it is a regular file of bounded size, copies its bytes into
a temporary file in the cache and renames that into place; then removes the output folder with
the fd-based ``shutil.rmtree``. Nothing the build could write is followed as a link.

Where bubblewrap cannot run (and the grading does not require a jail), nvcc runs as a plain
process with the same bounds and the same pick-up, and the result says so.
"""

from __future__ import annotations

import errno
import os
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from runner import environment, procs
from runner.errors import CompileError, EnvironmentNotSupported
from runner.languages import cuda_harness, nvcc
from runner.policy import (BUILD_MAX_CAPTURE_BYTES, BUILD_MAX_FILE_BYTES, BUILD_MAX_LIBRARY_BYTES,
                           BUILD_MAX_OUTPUT_BYTES, BUILD_MAX_PROCESSES, BUILD_MEMORY_BYTES,
                           BUILD_TIMEOUT_S, BUILD_TMP_BYTES)
from runner.sandbox import jail

JAIL_SRC = "/build/src"          # the source folder, read-only in the build jail
JAIL_OUT = "/build/out"          # the output folder, the one writable place besides /tmp
LIBRARY_NAME = "solution.so"     # what nvcc writes into the output folder
POLL_S = 0.1

assert shutil.rmtree.avoids_symlink_attacks, "shutil.rmtree must be fd-based here"


@dataclass
class Built:
    """A library in the trusted cache."""

    library: Path
    cached: bool
    target: nvcc.Target
    nvcc: nvcc.NvccInfo
    command: List[str]               # the command that ran (bwrap's, when jailed); [] if cached
    log: str = ""                    # nvcc's warnings on a fresh build, cleaned and bounded
    notes: List[str] = field(default_factory=list)   # e.g. "the CUDA build was not isolated"

    def info(self) -> Dict[str, str]:
        """What the grading child is told about the build (for the ``compiled`` message)."""
        return {"target": self.target.name, "nvcc": self.nvcc.release, "log": self.log}


class BuildUnavailable(Exception):
    """A jail is required and none can be made here."""


# -- the entry point -----------------------------------------------------------------------------

def build(path: Path, capability: Optional[Tuple[int, int]], challenge_flags: Sequence[str] = (),
          user_flags: Sequence[str] = (), sandbox: str = "auto") -> Built:
    """The shared library for ``path`` in the trusted cache: found there, or built by nvcc in
    a jail (``sandbox``: "auto" jails where bubblewrap works, "require" raises
    BuildUnavailable where it does not, "off" runs nvcc as a plain process). CompileError
    with nvcc's messages, naming ``path.name``, when the build fails."""
    path = Path(path)
    flags = (nvcc.validate_flags(challenge_flags, "the challenge's nvcc flag")
             + nvcc.validate_flags(user_flags))
    info = nvcc.nvcc_info()
    target = nvcc.target_for(capability, info.gpu_codes)
    source = path.read_bytes()
    folder = nvcc.cuda_cache_dir()
    library = folder / f"{nvcc.cache_key(source, info, target, flags)}.so"
    if _is_regular(library):
        return Built(library, True, target, info, [])

    notes: List[str] = []
    jailed = False
    if sandbox == "off":
        notes.append("the CUDA build was not isolated: no sandbox was asked for")
    else:
        jailed, why = jail.probe()
        if not jailed and sandbox == "require":
            raise BuildUnavailable(why)
        if not jailed:
            notes.append(f"the CUDA build was not isolated: {why}")
    root = Path(tempfile.mkdtemp(prefix=f"cuda-build-{secrets.token_hex(4)}-", dir=_work_root()))
    try:
        src, out = root / "src", root / "out"
        src.mkdir()
        out.mkdir()
        # a copy of exactly the bytes hashed above, named like the user's file so that nvcc's
        # messages name it; nvcc picks the language from the suffix
        copy_name = path.name if path.name.endswith(".cu") else f"{path.name}.cu"
        (src / copy_name).write_bytes(source)
        (src / cuda_harness.FILE_NAME).write_text(cuda_harness.SOURCE)
        seen_src, seen_out = (JAIL_SRC, JAIL_OUT) if jailed else (str(src), str(out))
        inner = compiler_command(info.path, [f"{seen_src}/{copy_name}",
                                             f"{seen_src}/{cuda_harness.FILE_NAME}"],
                                 f"{seen_out}/{LIBRARY_NAME}", target, flags)
        if jailed:
            command = jail_command(inner, src, out, info.path)
            env = {"PATH": environment.search_path("/usr/bin:/bin")}
            cwd = str(root)
        else:
            command = inner
            env = dict(environment.whole(), TMPDIR=str(root / "tmp"), HOME=str(root / "tmp"))
            (root / "tmp").mkdir()
            cwd = str(root / "tmp")
        done = run_bounded(command, env, cwd, out)
        log = nvcc.clean_log(done.output, Path(seen_src),
                             {f"{seen_src}/{copy_name}": path.name, f"{seen_out}/": ""})
        if jailed and done.returncode != 0 and done.output.startswith("bwrap: "):
            raise EnvironmentNotSupported(f"the CUDA build's jail could not be made: "
                                          f"{done.output.strip()[:500]}")
        if done.stopped:
            raise CompileError(_stopped_message(done.stopped, path.name), nvcc.bound(log))
        if done.returncode != 0:
            raise CompileError(
                f"{path.name} did not compile: "
                f"{nvcc.first_error(log) or _exit_text(done.returncode)}",
                nvcc.bound(log) or f"{_exit_text(done.returncode)} and printed nothing")
        collect(out, LIBRARY_NAME, library, path.name, log)
        return Built(library, False, target, info, command, nvcc.bound(log), notes)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compiler_command(nvcc_path: str, sources: Sequence[str], output: str, target: nvcc.Target,
                     flags: Sequence[str]) -> List[str]:
    """nvcc's argument list (a seam for tests, which put a hostile "compiler" here)."""
    return nvcc.build_command(nvcc_path, [Path(s) for s in sources], Path(output), target, flags)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _work_root() -> Path:
    root = environment.jobs_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"nvcc was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"nvcc was killed by signal {-returncode}"
    return f"nvcc exited with code {returncode}"


# -- the jail ------------------------------------------------------------------------------------

def jail_command(inner: Sequence[str], src: Path, out: Path, nvcc_path: str) -> List[str]:
    """bwrap's command line running ``inner`` in the build jail."""
    bwrap = jail.bwrap_path()
    assert bwrap, "jail.probe() first"
    args = [bwrap, "--unshare-user", "--uid", str(jail.SANDBOX_UID), "--gid", str(jail.SANDBOX_UID),
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "build", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--disable-userns"]
    args += jail._system_binds()
    for name in jail.ETC_FILES:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(BUILD_TMP_BYTES), "--tmpfs", "/tmp"]
    toolkit = Path(nvcc_path).resolve().parent.parent
    shown: List[Path] = []
    # the toolkit where outside /usr; the interpreter's packages too, for an nvcc installed
    # from pip (its headers and libraries lie in other packages' folders)
    for path in [*jail.cuda_paths(), toolkit, *jail.python_paths()]:
        if (path.is_dir() and not str(path).startswith("/usr/") and path != Path("/")
                and not any(p == path or p in path.parents for p in shown)):
            shown.append(path)
    for path in shown:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(src), JAIL_SRC, "--bind", str(out), JAIL_OUT, "--chdir", "/tmp",
             "--clearenv"]
    env = {"PATH": environment.search_path("/usr/local/bin:/usr/bin:/bin"), "HOME": "/tmp",
           "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    env.update(environment.inherited(("CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH")))
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return args + ["--", *inner]


# -- running it within bounds --------------------------------------------------------------------

@dataclass
class Finished:
    returncode: int
    output: str
    stopped: str = ""    # why it was killed: "time", "memory", "processes", "output"


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (BUILD_MAX_FILE_BYTES, BUILD_MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_bounded(command: Sequence[str], env: Dict[str, str], cwd: str, out: Path,
                timeout_s: Optional[float] = None) -> Finished:
    """Run ``command`` (no shell) in a session of its own; kill it (and with bwrap's
    --die-with-parent, its whole PID namespace) past the time, memory, process or output
    folder bounds. Only the first BUILD_MAX_CAPTURE_BYTES of its output are kept."""
    timeout_s = BUILD_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_limit_files)
    except OSError as exc:
        raise EnvironmentNotSupported(f"could not run the CUDA build ({command[0]}): {exc}")
    kept = bytearray()

    def drain() -> None:
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                return
            if len(kept) < BUILD_MAX_CAPTURE_BYTES:
                kept.extend(chunk[:BUILD_MAX_CAPTURE_BYTES - len(kept)])

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stopped = ""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            stopped = "time"
        else:
            usage = procs.tree_usage(proc.pid)
            if usage.rss_bytes > BUILD_MEMORY_BYTES:
                stopped = "memory"
            elif usage.processes > BUILD_MAX_PROCESSES:
                stopped = "processes"
            elif procs.folder_usage(str(out))[0] > BUILD_MAX_OUTPUT_BYTES:
                stopped = "output"
        if stopped:
            procs.kill_tree(proc.pid, groups=[proc.pid])   # bwrap's namespace dies with it
            break
        time.sleep(POLL_S)
    proc.wait()
    reader.join(timeout=10)
    proc.stdout.close()
    return Finished(proc.returncode, bytes(kept).decode("utf-8", errors="replace"), stopped)


def _stopped_message(why: str, name: str) -> str:
    if why == "time":
        return (f"nvcc took longer than {BUILD_TIMEOUT_S:.0f} s to build {name} and was "
                f"stopped; look for huge unrolled loops or template recursion")
    if why == "memory":
        return (f"nvcc used more than {BUILD_MEMORY_BYTES / 2**30:.0f} GiB of memory building "
                f"{name} and was stopped; look for huge unrolled loops or template recursion")
    if why == "processes":
        return (f"the build of {name} started more than {BUILD_MAX_PROCESSES} processes and was "
                f"stopped")
    return (f"the build of {name} wrote more than {BUILD_MAX_OUTPUT_BYTES / 2**30:.0f} GiB and was "
            f"stopped")


# -- taking the library in -----------------------------------------------------------------------

def collect(out: Path, name: str, destination: Path, file_name: str, log: str = "") -> None:
    """Copy the regular file ``out/name`` into ``destination`` (atomically, through a temporary
    file beside it), following no link; CompileError when it is missing, a link, not a regular
    file, or too big. Call only once nothing that could write ``out`` runs any more."""
    details = nvcc.bound(log)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dir_fd = os.open(out, flags)
    except OSError as exc:
        raise CompileError(f"{file_name} did not compile: the build's output folder could not "
                           f"be opened ({exc.strerror}); refused", details)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                why = "the build produced no library"
            elif exc.errno == errno.ELOOP:
                why = "the build's library is a symbolic link, not a file; refused"
            else:
                why = f"the build's library could not be opened ({exc.strerror}); refused"
            raise CompileError(f"{file_name} did not compile: {why}", details)
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CompileError(f"{file_name} did not compile: the build's library is not a "
                               f"regular file; refused", details)
        if st.st_size > BUILD_MAX_LIBRARY_BYTES:
            raise CompileError(f"{file_name} did not compile: the build's library is larger "
                               f"than {BUILD_MAX_LIBRARY_BYTES // 2**20} MiB; refused", details)
        _copy_in(fd, destination, file_name, details)
    finally:
        os.close(fd)


def _copy_in(fd: int, destination: Path, file_name: str, details: str) -> None:
    tmp_fd, tmp = tempfile.mkstemp(prefix=".incoming-", suffix=".so", dir=destination.parent)
    try:
        with os.fdopen(tmp_fd, "wb") as target:
            total = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > BUILD_MAX_LIBRARY_BYTES:
                    raise CompileError(f"{file_name} did not compile: the build's library is "
                                       f"larger than {BUILD_MAX_LIBRARY_BYTES // 2**20} MiB; refused",
                                       details)
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- the grading's copy --------------------------------------------------------------------------

def grading_copy(library: Path) -> Path:
    """A folder of this grading's own holding a copy of ``library`` (as LIBRARY_NAME), to
    show read-only in its jail (never the cache, which holds other submissions' libraries).
    The caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix="cuda-library-", dir=_work_root()))
    os.chmod(folder, 0o755)
    fd = os.open(library, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with open(folder / LIBRARY_NAME, "xb") as target:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                target.write(chunk)
    finally:
        os.close(fd)
    os.chmod(folder / LIBRARY_NAME, 0o444)
    return folder / LIBRARY_NAME
