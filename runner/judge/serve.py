"""``run_challenge.py serve``: the judge on one machine (API + a worker per local GPU), the API
alone (a fleet's API hosts), or a GPU host's workers alone (``--workers-only``)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

from runner import environment
from runner.exit_codes import EXIT_USAGE
from runner.judge.accelerators import CPU, Accelerators
from runner.judge.config import ConfigError, JudgeConfig, load_config
from runner.judge.worker.supervisor import Supervisor, plan_workers
from runner.sandbox import jail

log = logging.getLogger("runner.judge")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_challenge.py serve",
        description="Run the judge service. With no --config it binds to loopback only, with "
                    "authentication off; any other address needs a config with tokens.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--config", type=Path, default=environment.judge_config(),
                   help="the judge's YAML config (see deploy/judge.example.yaml; or $JUDGE_CONFIG)")
    p.add_argument("--data-dir", type=Path, default=environment.judge_data_dir(),
                   help="this judge's own folder: the embedded SQLite store, and its local "
                        "workers' locks and job files (default ./judge-data, or "
                        "$JUDGE_DATA_DIR); two judges on one machine need two")
    p.add_argument("--workers", default=None,
                   help="override the config's `workers`: auto | none | cpu:N | gpus:0,1")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--api-only", action="store_true", help="start no workers here")
    mode.add_argument("--workers-only", action="store_true",
                      help="a GPU host: start only this host's workers, for the judge at --url "
                           "(token in $JUDGE_WORKER_TOKEN)")
    p.add_argument("--url", help="with --workers-only: the judge's API URL")
    p.add_argument("--log-level", default="info")
    p.add_argument("--allow-unsandboxed", action="store_true",
                   help="let local workers grade where no bubblewrap jail can be made (each "
                        "submission then runs with the worker's rights: never for untrusted code)")
    return p


def sandbox_refusal(args) -> Optional[str]:
    """Why this host's workers may not grade (None when they may)."""
    why = "" if args.allow_unsandboxed else jail.isolation_refusal()
    if not why:
        return None
    return (f"refusing to start workers: submissions would run without a sandbox ({why}). "
            f"Install bubblewrap and run where cgroups are writable, or pass "
            f"--allow-unsandboxed for trusted code only")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _accelerator_for_gpu(accelerators):
    def pick(index: int) -> str:
        import torch   # lazy: torch (seconds) only where a GPU's name is needed

        name = torch.cuda.get_device_name(index) if torch.cuda.is_available() else f"gpu{index}"
        try:
            return accelerators.resolve(name)
        except Exception:  # noqa: BLE001 - not an alias: one configured accelerator is unambiguous
            if len(accelerators.names) == 1:
                return accelerators.names[0]
            raise ConfigError(f"GPU {index} ({name}) matches none of the configured accelerators "
                              f"({', '.join(accelerators.names)}): add its name as an alias")
    return pick


def worker_args(config: JudgeConfig, allow_unsandboxed: bool = False) -> List[str]:
    args: List[str] = ["--allow-unsandboxed"] if allow_unsandboxed else []
    for folder in config.challenge_dirs:
        args += ["--challenges", str(folder)]
    if config.queue.backend == "dramatiq":
        q = config.queue
        args += ["--redis-url", q.redis_url, "--namespace", q.namespace,
                 "--heartbeat-timeout-ms", str(q.heartbeat_timeout_ms),
                 "--maintenance-chance", str(q.maintenance_chance)]
    args += ["--watchdog-margin", str(config.leases.watchdog_margin_s)]
    return args


def workers_only(args, config: JudgeConfig) -> int:
    if not args.url:
        print("error: --workers-only needs --url (the judge's API)", file=sys.stderr)
        return EXIT_USAGE
    token = environment.worker_token()
    if not token:
        print("error: set $JUDGE_WORKER_TOKEN to a token with the worker role", file=sys.stderr)
        return EXIT_USAGE
    accelerators = Accelerators.configured(config.accelerators, config.accelerator_map)
    cpu_name = CPU if CPU in accelerators.names else accelerators.names[0]
    specs = plan_workers(args.workers or config.workers, _accelerator_for_gpu(accelerators),
                         cpu_name)
    refusal = sandbox_refusal(args)
    if refusal and specs:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    for spec in specs:
        spec.extra_args = worker_args(config, args.allow_unsandboxed)
    supervisor = Supervisor(specs, args.url, token)
    supervisor.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
    return 0


def serve(args, config: JudgeConfig) -> int:
    # lazy: the judge's extras (uvicorn, fastapi, prometheus); `serve --help` and a usage
    # error need none of them
    try:
        import uvicorn

        from runner.judge.server.app import create_app
        from runner.judge.server.service import JudgeService
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "runner":
            raise       # our bug, not a missing extra
        print(f"error: serve needs the judge's packages ({exc.name} is missing): "
              f"pip install -e '.[judge]'", file=sys.stderr)
        return 2

    if not config.auth_enabled:
        if not is_loopback(args.host):
            print(f"error: binding {args.host} needs a config with tokens (authentication is "
                  f"off without one); use --host 127.0.0.1, or pass --config with `tokens:` "
                  f"(see deploy/judge.example.yaml)", file=sys.stderr)
            return EXIT_USAGE
        log.warning("authentication is OFF (no config with tokens): anyone who can reach "
                    "%s:%d can submit code; it binds to loopback only", args.host, args.port)
    service = JudgeService.from_config(config, args.data_dir)
    supervisor = None
    if not args.api_only:
        worker_token = secrets.token_urlsafe(32)      # this process's own, never written down
        service.tokens.add("local-workers", ["worker"], worker_token)
        names = service.accelerators
        cpu_name = CPU if CPU in names.names else names.names[0]
        specs = plan_workers(args.workers or config.workers, _accelerator_for_gpu(names), cpu_name)
        refusal = sandbox_refusal(args)
        if refusal and specs:
            print(f"error: {refusal}", file=sys.stderr)
            return EXIT_USAGE
        # this judge's own lock and job folders: another judge on the machine (another
        # --data-dir) never holds them (a GPU's lock is machine-wide as well)
        own = (args.data_dir / "workers").resolve()
        for spec in specs:
            spec.extra_args = worker_args(config, args.allow_unsandboxed) + ["--lock-dir", str(own)]
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        url = f"http://{'[' + host + ']' if ':' in host else host}:{args.port}"
        supervisor = Supervisor(specs, url, worker_token, on_state=service.local_worker)
    app = create_app(service)
    limits = config.limits
    log.info("judge: accelerators %s, store %s, queue %s, %d local worker(s)",
             ", ".join(service.accelerators.names), config.store_url or args.data_dir,
             config.queue.backend, len(supervisor.specs) if supervisor else 0)
    uv_config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                               ws_max_size=limits.max_message_bytes * 2 + 65536,
                               timeout_graceful_shutdown=5)
    # after uvicorn.Config, which sets up uvicorn's loggers
    logging.getLogger("uvicorn.access").addFilter(WorkerPollsAtDebug())
    uv = _judge_server(uv_config, service)
    if supervisor is not None:
        supervisor.start()
    try:
        uv.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
    stopped_by = getattr(uv, "stopped_by", [])
    if stopped_by:
        log.info("judge stopped (%s): drained and shut down cleanly",
                 ", ".join(signal.Signals(s).name for s in stopped_by))
    return 0


# the worker endpoints a worker calls all the time (a long-poll claim every few seconds, a
# heartbeat per job, its presence): routine, so DEBUG; a refused one (4xx, 5xx) stays visible
WORKER_POLLS = ("/api/v1/worker/claim", "/api/v1/worker/presence", "/heartbeat", "/events")


class WorkerPollsAtDebug(logging.Filter):
    """uvicorn's access lines of worker polls, at DEBUG instead of INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) < 5 or not isinstance(args[2], str):
            return True
        path, status = args[2].split("?", 1)[0], args[4]
        routine = (path.startswith("/api/v1/worker/") and path.endswith(WORKER_POLLS)
                   and isinstance(status, int) and status < 400)
        if not routine or record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _judge_server(config, service):
    """A uvicorn server that ends the workers' long-poll claims as soon as shutdown begins,
    so that its graceful wait does not have to cancel them (each cancellation logs a
    traceback)."""
    import uvicorn         # lazy: the judge extra

    class JudgeServer(uvicorn.Server):
        stopped_by: List[int] = []

        def handle_exit(self, sig, frame) -> None:
            service.release_waiters()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn's, except that the Ctrl-C or SIGTERM that stopped the server is not
            raised again once it has shut down (which printed a KeyboardInterrupt traceback, or
            ended the process by the signal): ``serve`` drains, then exits 0."""
            with super().capture_signals():
                try:
                    yield
                finally:
                    self.stopped_by = list(self._captured_signals)
                    self._captured_signals.clear()

    return JudgeServer(config)


def serve_main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        if args.workers_only:
            return workers_only(args, load_config(args.config, for_workers=True))
        config = load_config(args.config)
        return serve(args, config)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
