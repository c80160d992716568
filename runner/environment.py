"""The one module that reads the process environment: every variable the harness and the
judge read, with its meaning and default (:data:`VARIABLES`), and a function per knob.

Values are read when asked, never at import, so a caller (or a test) that sets a variable
later is seen. Writing an environment (a child's, or this process's before a library reads
it) stays where it is done. The judge's config file (:mod:`runner.judge.config`) sets other
knobs; where it names a variable itself (``url_env``, ``redis_url_env``, a token's ``env``),
:func:`named` reads it. A worker's command line defaults to the variables below.

Both sides of the trust boundary may import this module: it imports the standard library only.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    default: str       # what holds where it is unset, in words

    def get(self) -> Optional[str]:
        """The value as set (``""`` included); None where unset."""
        return os.environ.get(self.name)


# -- the grader (the CLI, and a judge's job processes) ----------------------------------------

CHALLENGES_PATH = Variable("CHALLENGES_PATH", "folders searched for challenges before the "
                           "repository's own (os.pathsep-separated; a checkout of LeetGPU's "
                           "challenge repository or its challenges/ folder)", "none")
CHALLENGE_CACHE_DIR = Variable("CHALLENGE_CACHE_DIR", "the grader's cache: measured ceilings and "
                               "floors, CUDA libraries built", "$XDG_CACHE_HOME/"
                               "gpu-challenge-harness, else ~/.cache/gpu-challenge-harness")
XDG_CACHE_HOME = Variable("XDG_CACHE_HOME", "the user's cache folder", "~/.cache")
GRADER_BWRAP = Variable("GRADER_BWRAP", "the bubblewrap to run (one unpacked somewhere of its "
                        "own); set but not executable: no jail", "bwrap on PATH")
GRADER_CGROUP = Variable("GRADER_CGROUP", "the cgroup under which each job's cgroup is made",
                         "found from /proc/self/cgroup")
GRADER_JOBS_DIR = Variable("GRADER_JOBS_DIR", "where job folders and CUDA builds are made",
                           "the system's temporary folder")
GRADER_WARM_START = Variable("GRADER_WARM_START", "0: start each jail when its grading needs "
                             "it, not ahead", "jails start ahead")
GRADER_PROFILE_NCU = Variable("GRADER_PROFILE_NCU", "--action profile: off (never run Nsight "
                              "Compute) or always (run it even where it looks unusable)",
                              "run it where it can work")
CUDA_HOME = Variable("CUDA_HOME", "the CUDA toolkit (nvcc, ncu)", "/usr/local/cuda, PATH")
CUDA_PATH = Variable("CUDA_PATH", "the CUDA toolkit, where CUDA_HOME is unset", "as CUDA_HOME")
CUDA_VISIBLE_DEVICES = Variable("CUDA_VISIBLE_DEVICES", "the GPUs CUDA shows; a jail is started "
                                "before torch only where it shows the machine's one GPU", "all")
LD_LIBRARY_PATH = Variable("LD_LIBRARY_PATH", "library folders, shown read-only to the jail",
                           "none")
PATH = Variable("PATH", "the program search path, passed on to a build and a child",
                "a fixed system path (/usr/local/bin:/usr/bin:/bin)")
PYTHONPATH = Variable("PYTHONPATH", "the interpreter's extra paths, passed on to the child",
                      "none")
TMPDIR = Variable("TMPDIR", "a judge slot's jobs folder, where no --jobs-dir is given", "/tmp")

# -- the judge (serve, its workers, and --remote) ---------------------------------------------

JUDGE_CONFIG = Variable("JUDGE_CONFIG", "serve: the judge's YAML config", "none (defaults, "
                        "loopback only)")
JUDGE_DATA_DIR = Variable("JUDGE_DATA_DIR", "serve: the judge's own folder (store, locks, "
                          "job files)", "./judge-data")
JUDGE_WORKER_TOKEN = Variable("JUDGE_WORKER_TOKEN", "a worker's token (the worker role)",
                              "none: a worker refuses to start")
JUDGE_LOCK_DIR = Variable("JUDGE_LOCK_DIR", "where the one-worker-per-GPU lock files live",
                          "$XDG_RUNTIME_DIR, else /tmp")
XDG_RUNTIME_DIR = Variable("XDG_RUNTIME_DIR", "the user's runtime folder", "/tmp")
JUDGE_REDIS_URL = Variable("JUDGE_REDIS_URL", "a fleet worker's Redis (--redis-url)", "none")
JUDGE_WORKER_TIME_BUDGET = Variable("JUDGE_WORKER_TIME_BUDGET", "a worker's timed-run budget "
                                    "in seconds (--time-budget)", "the grader's")
JUDGE_WORKER_PREWARM_IDLE_ONLY = Variable("JUDGE_WORKER_PREWARM_IDLE_ONLY", "1: park the next "
                                          "job process only when idle (--prewarm-idle-only)",
                                          "also beside a running job")
JUDGE_WORKER_NO_PREWARM = Variable("JUDGE_WORKER_NO_PREWARM", "1: park no job process ahead "
                                   "(--no-prewarm)", "parked")
JUDGE_WORKER_CRASH_AT = Variable("JUDGE_WORKER_CRASH_AT", "tests: a worker kills itself at this "
                                 "point (claimed or result)", "never")
SERVICE_URL = Variable("SERVICE_URL", "--remote: the judge's URL", "none")
JUDGE_TOKEN = Variable("JUDGE_TOKEN", "--remote: the token sent", "SERVICE_TOKEN, else none")
SERVICE_TOKEN = Variable("SERVICE_TOKEN", "--remote: the token, where JUDGE_TOKEN is unset",
                         "none")
JUDGE_ACCELERATOR = Variable("JUDGE_ACCELERATOR", "--remote: the accelerator asked for",
                             "the judge's choice")

# every variable above, in order (for documentation and its test)
VARIABLES = [v for v in list(globals().values()) if isinstance(v, Variable)]


def _entries(variable: Variable, separator: str = os.pathsep) -> List[str]:
    return [e for e in (variable.get() or "").split(separator) if e]


# -- the grader's knobs --------------------------------------------------------------------------

def challenge_paths() -> List[str]:
    """The folders of ``$CHALLENGES_PATH``, in order, stripped."""
    return [e.strip() for e in _entries(CHALLENGES_PATH) if e.strip()]


def cache_root() -> Path:
    """``$CHALLENGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpu-challenge-harness``, else
    ``~/.cache/gpu-challenge-harness``."""
    override = CHALLENGE_CACHE_DIR.get()
    if override:
        return Path(override).expanduser()
    base = XDG_CACHE_HOME.get() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "gpu-challenge-harness"


def bwrap_override() -> Optional[str]:
    """``$GRADER_BWRAP`` as set (None: look for bwrap on PATH)."""
    return GRADER_BWRAP.get()


def cgroup_base() -> Optional[str]:
    return GRADER_CGROUP.get() or None


def jobs_root() -> Path:
    return Path(GRADER_JOBS_DIR.get() or tempfile.gettempdir())


def warm_start() -> bool:
    return GRADER_WARM_START.get() != "0"


def ncu_mode() -> str:
    """``off``, ``always`` or anything else (the default), lowercase."""
    return (GRADER_PROFILE_NCU.get() or "").strip().lower()


def cuda_homes() -> List[str]:
    """``$CUDA_HOME`` and ``$CUDA_PATH``, those set (non-empty), in that order."""
    return [v for v in (CUDA_HOME.get(), CUDA_PATH.get()) if v]


def visible_devices() -> Optional[str]:
    return CUDA_VISIBLE_DEVICES.get()


def library_path() -> List[str]:
    return _entries(LD_LIBRARY_PATH, ":")


def python_path() -> List[str]:
    return _entries(PYTHONPATH)


def search_path(default: str) -> str:
    """``$PATH`` as set (even empty), else ``default``."""
    value = PATH.get()
    return default if value is None else value


def inherited(names: Iterable[str]) -> Dict[str, str]:
    """The variables among ``names`` that are set, for a child's environment."""
    return {k: os.environ[k] for k in names if k in os.environ}


def whole() -> Dict[str, str]:
    """A copy of this process's environment (for a trusted child that inherits it all)."""
    return dict(os.environ)


def named(name: str) -> Optional[str]:
    """The variable a config file names (its ``*_env`` keys)."""
    return os.environ.get(name)


# -- the judge's knobs ---------------------------------------------------------------------------

def judge_config() -> Optional[str]:
    return JUDGE_CONFIG.get()


def judge_data_dir() -> Path:
    value = JUDGE_DATA_DIR.get()
    return Path("judge-data" if value is None else value)


def worker_token() -> str:
    return JUDGE_WORKER_TOKEN.get() or ""


def lock_dir() -> Path:
    return Path(JUDGE_LOCK_DIR.get() or XDG_RUNTIME_DIR.get() or "/tmp")


def tmp_dir() -> Path:
    return Path(TMPDIR.get() or "/tmp")


def redis_url() -> Optional[str]:
    return JUDGE_REDIS_URL.get()


def worker_time_budget() -> Optional[float]:
    value = JUDGE_WORKER_TIME_BUDGET.get()
    return float(value) if value else None


def prewarm_idle_only() -> bool:
    return JUDGE_WORKER_PREWARM_IDLE_ONLY.get() == "1"


def no_prewarm() -> bool:
    return JUDGE_WORKER_NO_PREWARM.get() == "1"


def crash_point() -> Optional[str]:
    return JUDGE_WORKER_CRASH_AT.get()


def service_url() -> Optional[str]:
    return SERVICE_URL.get()


def client_token() -> Optional[str]:
    """``$JUDGE_TOKEN``, else ``$SERVICE_TOKEN`` (the first set and non-empty)."""
    return next((v.get() for v in (JUDGE_TOKEN, SERVICE_TOKEN) if v.get()), None)


def client_accelerator() -> Optional[str]:
    return JUDGE_ACCELERATOR.get()
