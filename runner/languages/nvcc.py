"""nvcc: finding it, its version and targets, the flags a solution may add, the command, the
cache key, and its messages cleaned for users.

The build never goes through a shell: nvcc gets an argument list. A library is cached under
``<cache>/cuda-trusted/<key>.so``, the key hashing the source bytes, nvcc's version, the
target, every flag and the harness version, so building the same file again costs no nvcc
call. The build itself (nvcc in a jail of its own; only the trusted side writes the cache) is
:mod:`runner.languages.cuda_build`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from runner import environment
from runner.errors import CompileError, EnvironmentNotSupported
from runner.languages import cuda_harness
from runner.policy import BUILD_LOG_BYTES, BUILD_LOG_LINES

QUERY_TIMEOUT_S = 30.0
# Hopper, the GPU the project grades on: a machine without a GPU builds what an H100 would
DEFAULT_CAPABILITY = (9, 0)
STANDARD_CUDA_HOMES = ("/usr/local/cuda",)
DEFAULT_FLAGS = ("-O3", "-lineinfo", "-shared", "-Xcompiler=-fPIC",
                 "-Xlinker=--no-undefined")   # an undefined function is a build error, not a load error


# -- where things live -----------------------------------------------------------------------

# the trusted side's library cache, never shown to a jail (runner.languages.cuda_build); not
# "cuda", the folder every grading's jail could write before builds moved out of the jail
CACHE_FOLDER = "cuda-trusted"


def cuda_cache_dir() -> Path:
    folder = environment.cache_root() / CACHE_FOLDER
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentNotSupported(
            f"cannot create the CUDA build cache {folder}: {exc.strerror or exc}; set "
            f"CHALLENGE_CACHE_DIR to a writable folder")
    return folder


def find_nvcc() -> str:
    candidates = [shutil.which("nvcc")]
    for home in (*environment.cuda_homes(), *STANDARD_CUDA_HOMES):
        if home:
            candidates.append(str(Path(home) / "bin" / "nvcc"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise EnvironmentNotSupported(
        "nvcc (the CUDA compiler) was not found: CUDA solutions need the CUDA toolkit; "
        "install it and put nvcc on PATH (or set CUDA_HOME)")


# -- running nvcc ----------------------------------------------------------------------------

@dataclass
class Completed:
    returncode: int
    output: str   # stdout and stderr together


def _run(command: Sequence[str], timeout: float, cwd: Optional[str] = None,
         env: Optional[Dict[str, str]] = None) -> Completed:
    """Run ``command`` (no shell); on timeout kill its whole process group (cicc, ptxas, gcc)."""
    proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return Completed(proc.returncode, out.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class NvccInfo:
    path: str
    version_text: str          # all of ``nvcc --version``
    release: str               # e.g. "13.0.88"
    gpu_codes: Tuple[str, ...]  # ``nvcc --list-gpu-code``: sm_75, sm_80, ...


_info_memo: Dict[Tuple[str, int, int], NvccInfo] = {}


def nvcc_info(path: Optional[str] = None) -> NvccInfo:
    """nvcc's version and targets; remembered on disk per nvcc binary (path, size, mtime), so
    a cached build needs no nvcc call at all."""
    path = path or find_nvcc()
    real = os.path.realpath(path)
    st = os.stat(real)
    ident = (real, st.st_size, st.st_mtime_ns)
    if ident in _info_memo:
        return _info_memo[ident]
    record = cuda_cache_dir() / f"nvcc-{_sha256(json.dumps(ident).encode())[:24]}.json"
    try:
        data = json.loads(record.read_text())
        info = NvccInfo(path, data["version_text"], data["release"], tuple(data["gpu_codes"]))
    except (OSError, ValueError, KeyError, TypeError):
        info = _query_nvcc(path)
        _write_atomically(record, json.dumps({"version_text": info.version_text,
                                              "release": info.release,
                                              "gpu_codes": list(info.gpu_codes)}).encode())
    _info_memo[ident] = info
    return info


def _query_nvcc(path: str) -> NvccInfo:
    try:
        version = _run([path, "--version"], QUERY_TIMEOUT_S)
        codes = _run([path, "--list-gpu-code"], QUERY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentNotSupported(f"could not run nvcc at {path}: {exc}")
    if version.returncode != 0:
        raise EnvironmentNotSupported(f"`{path} --version` failed: {version.output.strip()[:500]}")
    match = re.search(r"\bV(\d+(?:\.\d+)+)", version.output)
    release = match.group(1) if match else version.output.strip().splitlines()[-1][:80]
    gpu_codes = tuple(re.findall(r"\bsm_\d+[a-z]?\b", codes.output)) if codes.returncode == 0 else ()
    return NvccInfo(path, version.output.strip(), release, gpu_codes)


# -- what to build for -----------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str      # "sm_90a", or "compute_120" for PTX the driver compiles
    gencode: str   # the nvcc flag


def target_for(capability: Optional[Tuple[int, int]], gpu_codes: Sequence[str] = ()) -> Target:
    """The GPU's own architecture (``sm_90a`` on Hopper: the "a" variants allow wgmma,
    setmaxnreg and the like, and exist from compute capability 9.0 on). A GPU newer than nvcc
    gets PTX for the newest architecture nvcc knows, compiled by the driver at load time."""
    major, minor = capability or DEFAULT_CAPABILITY
    cc = major * 10 + minor
    known = sorted({int(m) for m in re.findall(r"sm_(\d+)", " ".join(gpu_codes))})
    if not known or cc in known:
        arch = f"{cc}a" if major >= 9 else f"{cc}"
        return Target(f"sm_{arch}", f"-gencode=arch=compute_{arch},code=sm_{arch}")
    older = [k for k in known if k <= cc]
    if not older:
        raise EnvironmentNotSupported(
            f"this GPU (compute capability {major}.{minor}) is older than every target this nvcc "
            f"supports ({', '.join(f'sm_{k}' for k in known)}); use an older CUDA toolkit")
    return Target(f"compute_{older[-1]}", f"-gencode=arch=compute_{older[-1]},code=compute_{older[-1]}")


# -- flags -----------------------------------------------------------------------------------

# nvcc options (leading dashes stripped; nvcc takes one or two) that would change what is
# built or where it goes, read flags from a file, or run other programs
_FORBIDDEN = {
    "o": "sets the output file", "output-file": "sets the output file",
    "odir": "sets the output folder", "output-directory": "sets the output folder",
    "run": "runs the result", "run-args": "runs the result",
    "ccbin": "replaces the host compiler", "compiler-bindir": "replaces the host compiler",
    "optf": "reads options from a file", "options-file": "reads options from a file",
    "keep": "keeps temporary files", "keep-dir": "keeps temporary files",
    "save-temps": "keeps temporary files", "dryrun": "skips the build", "time": "writes a file",
    "fdevice-time-trace": "writes a file", "x": "changes the input language",
    "language": "changes the input language",
    "version": "skips the build", "V": "skips the build", "help": "skips the build", "h": "skips the build",
    "list-gpu-arch": "skips the build", "list-gpu-code": "skips the build",
}
for _phase in ("c", "compile", "E", "preprocess", "M", "MM", "MD", "MMD", "MF", "MT",
               "generate-dependencies", "generate-nonsystem-dependencies",
               "generate-dependencies-with-compile", "generate-nonsystem-dependencies-with-compile",
               "dependency-output", "dependency-target-name", "ptx", "cubin", "fatbin", "cuda",
               "lib", "dlink", "device-link", "link", "optix-ir", "ltoir"):
    _FORBIDDEN[_phase] = "changes what nvcc produces (the harness needs a shared library)"
_ALLOWED_O = {"optimize", "opt-info", "optimization-info"}   # other -o... could be an output path

# options passing comma-separated options on to another tool; their value may be the next item
_PASS_THROUGH = {"Xcompiler", "compiler-options", "Xlinker", "linker-options", "Xptxas",
                 "ptxas-options", "Xnvlink", "nvlink-options", "Xcudafe", "Xarchive",
                 "archive-options", "Xfatbin", "fatbin-options"}
# host compiler/linker options that set an output, load plugins or run other programs
_FORBIDDEN_SUB = ("o", "B", "wrapper", "fplugin", "specs", "save-temps", "dumpdir", "dumpbase",
                  "M")
_HARMLESS_SUB = ("Bsymbolic", "Bstatic", "Bdynamic")


def _forbidden_sub_option(sub: str) -> bool:
    if sub.startswith("@"):   # a response file: more options from a file
        return True
    bare = sub.lstrip("-")
    return (sub.startswith("-") and bare.startswith(_FORBIDDEN_SUB)
            and not bare.startswith(_HARMLESS_SUB))


def _reject(source: str, item: str, why: str) -> CompileError:
    return CompileError(f"{source} {item!r} is not allowed: {why}",
                        "Each extra nvcc flag is one argument starting with '-', with any value "
                        "attached by '=' (e.g. --nvcc-flag=-maxrregcount=64, "
                        "--nvcc-flag=-Xptxas=-v); flags that set the output, change what nvcc "
                        "produces or run other programs are refused.")


def validate_flags(flags: Sequence[str], source: str = "--nvcc-flag") -> List[str]:
    """``flags`` as nvcc arguments, or CompileError naming the first one that is refused."""
    flags = list(flags)
    checked: List[str] = []
    k = 0
    while k < len(flags):
        item = flags[k]
        if not isinstance(item, str) or not item:
            raise _reject(source, str(item), "it is empty")
        if "\0" in item:
            raise _reject(source, item, "it contains a NUL byte")
        if not item.startswith("-") or item in ("-", "--"):
            raise _reject(source, item, "it is not a flag (pass options with values as one "
                                        "argument, e.g. -maxrregcount=64)")
        name, has_value, value = item.lstrip("-").partition("=")
        if name in _FORBIDDEN:
            raise _reject(source, item, f"it {_FORBIDDEN[name]}")
        if name.startswith("o") and name not in _ALLOWED_O:
            raise _reject(source, item, "it could set the output file")
        checked.append(item)
        if name in _PASS_THROUGH:
            if not has_value:
                if k + 1 >= len(flags):
                    raise _reject(source, item, "it needs a value (e.g. -Xptxas=-v)")
                k += 1
                value = flags[k]
                if "\0" in value:
                    raise _reject(source, value, "it contains a NUL byte")
                checked.append(value)
            for sub in value.split(","):
                if _forbidden_sub_option(sub):
                    raise _reject(source, item if has_value else f"{item} {value}",
                                  f"{sub!r} would set an output, load a plugin or run a program")
        k += 1
    return checked


def build_command(nvcc: str, sources: Sequence[Path], output: Path, target: Target,
                  flags: Sequence[str]) -> List[str]:
    """nvcc's argument list: defaults, target, extra flags, sources, then the output last."""
    return [nvcc, *DEFAULT_FLAGS, target.gencode, *flags, *map(str, sources), "-o", str(output)]


# -- the build -------------------------------------------------------------------------------

def cache_key(source: bytes, nvcc: NvccInfo, target: Target, flags: Sequence[str]) -> str:
    fields = {"source": _sha256(source), "nvcc": nvcc.version_text, "target": target.gencode,
              "flags": [*DEFAULT_FLAGS, *flags], "harness": cuda_harness.HARNESS_VERSION}
    return _sha256(json.dumps(fields, sort_keys=True).encode())


# -- messages --------------------------------------------------------------------------------

_TMPXFT = re.compile(r"(?:[^\s'\"`]*/)?tmpxft_[0-9a-f]+_[0-9a-f]+-\d+_")


def clean_log(text: str, work: Path, renames: Dict[str, str]) -> str:
    """nvcc's output with build paths replaced: the user's copy by their file name, other
    temporary files by their short names."""
    for long, short in renames.items():
        text = text.replace(long, short)
    text = text.replace(str(work) + os.sep, "")
    return _TOKEN.sub(_strip_tmpxft, text).strip()


# word by word: _TMPXFT on the whole text takes time quadratic in the length of a word
_TOKEN = re.compile(r"[^\s'\"`]+")


def _strip_tmpxft(match: "re.Match[str]") -> str:
    word = match.group(0)
    return _TMPXFT.sub("", word) if "tmpxft_" in word and len(word) <= 4096 else word


def first_error(log: str) -> str:
    for line in log.splitlines():
        if re.search(r"\berror\b|undefined reference", line, re.IGNORECASE):
            line = line.strip()
            return line if len(line) <= 300 else line[:297] + "..."
    return ""


def bound(text: str, max_lines: int = BUILD_LOG_LINES, max_bytes: int = BUILD_LOG_BYTES) -> str:
    """The first ``max_lines`` lines within ``max_bytes`` bytes, with a note of what was cut."""
    lines = text.splitlines()
    kept: List[str] = []
    size = 0
    for line in lines[:max_lines]:
        size += len(line.encode("utf-8")) + 1
        if size > max_bytes:
            if not kept:  # one enormous line: keep its start
                kept.append(line.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore"))
            break
        kept.append(line)
    if len(kept) == len(lines) and size <= max_bytes:
        return text
    return ("\n".join(kept) + f"\n[... output cut after {len(kept)} of {len(lines)} lines "
            f"({max_lines} lines / {max_bytes} bytes at most); fix the first errors first]")


# -- files -----------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
