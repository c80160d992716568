"""The judge's configuration: a YAML file (see ``deploy/judge.example.yaml``) or the defaults.

Secrets never need to be written in the file itself: a token can be given as its SHA-256
digest, or read from an environment variable or a file; database and Redis URLs can come
from environment variables (``url_env``, ``redis_url_env``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from runner import environment
from runner.catalog import discover
from runner.policy import (HEARTBEAT_TIMEOUT_MS, HOST_MEMORY_BYTES, MAINTENANCE_CHANCE,
                           QUEUE_NAMESPACE, TIME_LIMIT_S, WATCHDOG_MARGIN_S)

ROLES = ("user", "author", "worker", "admin")
WORKERS_RE = re.compile(r"^(auto|none|cpu:[1-9][0-9]*|gpus:[0-9]+(,[0-9]+)*)$")
MIN_TOKEN_CHARS = 20


class ConfigError(Exception):
    """The configuration file is missing, unreadable or wrong; the message says where."""


@dataclass
class TokenSpec:
    name: str
    roles: List[str]
    token: Optional[str] = None       # the token itself (from `token`, `env` or `file`)
    sha256: Optional[str] = None      # or only its digest


@dataclass
class JudgeLimits:
    queue_capacity: int = 64          # waiting submissions per accelerator
    max_in_flight: int = 4            # per token: submissions queued or being graded
    rate_limit: int = 30              # per token: submissions per rate_window_s
    rate_window_s: float = 60.0
    max_message_bytes: int = 1 << 20  # one WebSocket message / HTTP body
    max_file_bytes: int = 256 << 10   # one submitted file (UTF-8)
    time_limit_s: float = TIME_LIMIT_S  # wall clock for one grading (Triton's build included;
    #                                     a CUDA build comes before it, with its own 120 s)
    first_message_timeout_s: float = 30.0
    max_queue_wait_s: float = 3600.0  # a submission no worker took within this ends `interrupted`
    host_memory_bytes: int = HOST_MEMORY_BYTES   # one grading's resident host memory


@dataclass
class LeaseSettings:
    lease_s: float = 30.0             # a worker that has not renewed its lease for this long is lost
    heartbeat_s: Optional[float] = None   # default: lease_s / 4
    max_retries: int = 2              # infrastructure faults retried at most this often
    reap_interval_s: float = 1.0
    avoid_failed_worker_s: float = 15.0   # a retry prefers another worker for this long
    watchdog_margin_s: float = WATCHDOG_MARGIN_S   # a worker stops a grading this long past
    #                                                the time limit

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_s or self.lease_s / 4


@dataclass
class QueueSettings:
    backend: str = "embedded"         # "embedded" (the store is the queue) or "dramatiq"
    redis_url: Optional[str] = None
    namespace: str = QUEUE_NAMESPACE
    heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS   # Dramatiq (runner.policy says what each is)
    maintenance_chance: int = MAINTENANCE_CHANCE
    repair_interval_s: float = 5.0         # re-dispatch messages lost by the broker


@dataclass
class JudgeConfig:
    tokens: List[TokenSpec] = field(default_factory=list)
    store_url: Optional[str] = None
    queue: QueueSettings = field(default_factory=QueueSettings)
    limits: JudgeLimits = field(default_factory=JudgeLimits)
    leases: LeaseSettings = field(default_factory=LeaseSettings)
    accelerators: Dict[str, List[str]] = field(default_factory=dict)   # name -> aliases
    # a requested GPU name no accelerator has (or "*": any known one) -> the accelerator that
    # serves it, or None to refuse it; default: every known GPU name -> the first accelerator
    accelerator_map: Dict[str, Optional[str]] = field(default_factory=dict)
    workers: str = "auto"             # what `serve` starts: auto | none | cpu:N | gpus:0,1
    challenge_dirs: List[Path] = field(default_factory=list)   # default: the repository's set
    path: Optional[Path] = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)


def _where(path: Optional[Path], key: str) -> str:
    return f"{path or 'config'}: {key}"


def _number(section: Dict[str, Any], key: str, default, path, kind=float, minimum=0):
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and not isinstance(value, int)) or value < minimum:
        raise ConfigError(f"{_where(path, key)} must be a {'whole ' if kind is int else ''}"
                          f"number >= {minimum}, not {value!r}")
    return kind(value)


def _secret(entry: Dict[str, Any], key_plain: str, key_env: str, key_file: str, where: str,
            required: bool = True) -> Optional[str]:
    if entry.get(key_plain) is not None:
        return str(entry[key_plain])
    if entry.get(key_env):
        value = environment.named(str(entry[key_env]))
        if not value:
            raise ConfigError(f"{where}: environment variable {entry[key_env]} is not set")
        return value
    if entry.get(key_file):
        try:
            return Path(str(entry[key_file])).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {entry[key_file]}: {exc.strerror}")
    if required:
        raise ConfigError(f"{where}: give `{key_plain}`, `{key_env}` or `{key_file}`")
    return None


def _tokens(raw: Any, path: Optional[Path]) -> List[TokenSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{_where(path, 'tokens')} must be a list of {{name, roles, ...}}")
    specs, names = [], set()
    for k, entry in enumerate(raw):
        where = _where(path, f"tokens[{k}]")
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where} needs a `name`")
        name = entry["name"]
        if name in names:
            raise ConfigError(f"{where}: the name {name!r} is used twice")
        names.add(name)
        roles = entry.get("roles", ["user"])
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise ConfigError(f"{where}: roles must be a list drawn from {', '.join(ROLES)}")
        digest = entry.get("sha256")
        if digest is not None:
            digest = str(digest).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{where}: sha256 must be 64 hexadecimal digits")
            specs.append(TokenSpec(name=name, roles=list(roles), sha256=digest))
            continue
        token = _secret(entry, "token", "env", "file", where)
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters; "
                              f"make one with `python -m runner.judge.server.auth new-token`")
        specs.append(TokenSpec(name=name, roles=list(roles), token=token))
    return specs


SECTION_KEYS = {
    "store": {"url", "url_env", "url_file"},
    "queue": {"backend", "redis_url", "redis_url_env", "redis_url_file", "namespace",
              "heartbeat_timeout_ms", "maintenance_chance", "repair_interval_s"},
    "limits": {"queue_capacity", "max_in_flight", "rate_limit", "rate_window_s",
               "max_message_bytes", "max_file_bytes", "time_limit_s", "first_message_timeout_s",
               "max_queue_wait_s", "host_memory_bytes"},
    "leases": {"lease_s", "heartbeat_s", "max_retries", "reap_interval_s",
               "avoid_failed_worker_s", "watchdog_margin_s"},
}


def _section(data: Dict[str, Any], key: str, path) -> Dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(path, key)} must be a mapping")
    # a misplaced setting (say, limits.watchdog_margin_s) would otherwise be silently ignored
    unknown = sorted(set(value) - SECTION_KEYS.get(key, set(value)))
    if unknown:
        raise ConfigError(f"{_where(path, key)}: unknown keys {', '.join(map(str, unknown))} "
                          f"(known: {', '.join(sorted(SECTION_KEYS[key]))})")
    return value


def parse_config(data: Any, path: Optional[Path] = None, for_workers: bool = False) -> JudgeConfig:
    """The config in ``data``. ``for_workers``: a GPU host's view, which skips the users'
    tokens and the store (a worker host holds neither)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a YAML mapping at the top level")
    known = {"tokens", "store", "queue", "limits", "leases", "accelerators", "accelerator_map",
             "workers", "challenges"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path or 'config'}: unknown keys {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    cfg = JudgeConfig(path=path, tokens=[] if for_workers else _tokens(data.get("tokens"), path))

    store = _section(data, "store", path)
    if not for_workers:
        cfg.store_url = _secret(store, "url", "url_env", "url_file", _where(path, "store"),
                                required=False)

    q = _section(data, "queue", path)
    backend = q.get("backend", "embedded")
    if backend not in ("embedded", "dramatiq"):
        raise ConfigError(f"{_where(path, 'queue.backend')} must be embedded or dramatiq")
    cfg.queue = QueueSettings(
        backend=backend,
        redis_url=_secret(q, "redis_url", "redis_url_env", "redis_url_file",
                          _where(path, "queue"), required=backend == "dramatiq"),
        namespace=str(q.get("namespace", QUEUE_NAMESPACE)),
        heartbeat_timeout_ms=_number(q, "heartbeat_timeout_ms", HEARTBEAT_TIMEOUT_MS, path, int,
                                     100),
        maintenance_chance=_number(q, "maintenance_chance", MAINTENANCE_CHANCE, path, int, 0),
        repair_interval_s=_number(q, "repair_interval_s", 5.0, path, float, 0.05))

    lim = _section(data, "limits", path)
    d = JudgeLimits()
    cfg.limits = JudgeLimits(
        queue_capacity=_number(lim, "queue_capacity", d.queue_capacity, path, int, 1),
        max_in_flight=_number(lim, "max_in_flight", d.max_in_flight, path, int, 1),
        rate_limit=_number(lim, "rate_limit", d.rate_limit, path, int, 1),
        rate_window_s=_number(lim, "rate_window_s", d.rate_window_s, path, float, 0.001),
        max_message_bytes=_number(lim, "max_message_bytes", d.max_message_bytes, path, int, 1024),
        max_file_bytes=_number(lim, "max_file_bytes", d.max_file_bytes, path, int, 1),
        time_limit_s=_number(lim, "time_limit_s", d.time_limit_s, path, float, 0.1),
        first_message_timeout_s=_number(lim, "first_message_timeout_s",
                                        d.first_message_timeout_s, path, float, 0.1),
        max_queue_wait_s=_number(lim, "max_queue_wait_s", d.max_queue_wait_s, path, float, 0.1),
        host_memory_bytes=_number(lim, "host_memory_bytes", d.host_memory_bytes, path, int,
                                  64 << 20))

    le = _section(data, "leases", path)
    d2 = LeaseSettings()
    cfg.leases = LeaseSettings(
        lease_s=_number(le, "lease_s", d2.lease_s, path, float, 0.1),
        heartbeat_s=_number(le, "heartbeat_s", None, path, float, 0.01),
        max_retries=_number(le, "max_retries", d2.max_retries, path, int, 0),
        reap_interval_s=_number(le, "reap_interval_s", d2.reap_interval_s, path, float, 0.01),
        avoid_failed_worker_s=_number(le, "avoid_failed_worker_s", d2.avoid_failed_worker_s,
                                      path, float, 0),
        watchdog_margin_s=_number(le, "watchdog_margin_s", d2.watchdog_margin_s, path, float, 0))
    if cfg.leases.heartbeat_interval >= cfg.leases.lease_s:
        raise ConfigError(f"{_where(path, 'leases.heartbeat_s')} must be shorter than lease_s")

    acc = data.get("accelerators") or {}
    if isinstance(acc, list):
        acc = {str(name): [] for name in acc}
    if not isinstance(acc, dict) or any(not isinstance(v, (list, type(None))) for v in acc.values()):
        raise ConfigError(f"{_where(path, 'accelerators')} must be a list of names or a mapping "
                          f"name -> list of aliases")
    cfg.accelerators = {str(k): [str(a) for a in (v or [])] for k, v in acc.items()}
    amap = data.get("accelerator_map") or {}
    if not isinstance(amap, dict) or any(v is not None and not isinstance(v, str)
                                         for v in amap.values()):
        raise ConfigError(f"{_where(path, 'accelerator_map')} must be a mapping: requested name "
                          f"(or '*') -> an accelerator of this judge, or null to refuse it")
    cfg.accelerator_map = {str(k): (str(v) if v is not None else None) for k, v in amap.items()}
    names = list(cfg.accelerators)
    for requested, served_by in cfg.accelerator_map.items():
        if served_by is not None and names and served_by not in names:
            raise ConfigError(f"{_where(path, 'accelerator_map')}: {requested} -> {served_by}, "
                              f"which is not one of `accelerators` ({', '.join(names)})")

    workers = str(data.get("workers", "auto"))
    if not WORKERS_RE.match(workers):
        raise ConfigError(f"{_where(path, 'workers')} must be auto, none, cpu:N or gpus:0,1,..., "
                          f"not {workers!r}")
    cfg.workers = workers

    dirs = data.get("challenges") or []
    if isinstance(dirs, str):
        dirs = [dirs]
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"{_where(path, 'challenges')} must be a list of folders")
    base = path.parent if path else Path.cwd()
    cfg.challenge_dirs = [(base / Path(d).expanduser()).resolve() for d in dirs]
    for folder in cfg.challenge_dirs:
        if not folder.is_dir():
            raise ConfigError(f"{_where(path, 'challenges')}: {folder} is not a folder")
        if not discover(folder):
            raise ConfigError(f"{_where(path, 'challenges')}: no challenge under {folder}; give "
                              f"a checkout, its challenges/ folder (<difficulty>/<number>_<slug>/"
                              f"challenge.py) or a difficulty folder")
    if backend == "dramatiq" and not cfg.accelerators:
        raise ConfigError(f"{path or 'config'}: a fleet (queue.backend: dramatiq) must list its "
                          f"accelerators, e.g. `accelerators: [H100]`")
    return cfg


def load_config(path: Optional[Path], for_workers: bool = False) -> JudgeConfig:
    """The configuration in ``path``, or the defaults (no tokens: authentication off)."""
    if path is None:
        return JudgeConfig()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the config {path}: {exc.strerror}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}")
    return parse_config(data, Path(path), for_workers)
