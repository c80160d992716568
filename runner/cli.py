"""``run_challenge.py``: grade a solution locally (run, submit), or set one up (init).

Exit codes: 0 accepted (or, for CUDA without a GPU, compiled), 1 any other verdict,
2 a usage error, 130 interrupted (Ctrl-C). With ``--json`` stdout carries exactly one JSON
object, an interrupted run's included; logs go to stderr.

Only grading imports torch (seconds): ``--help``, ``--action list``, ``init`` and usage errors
answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from dataclasses import asdict
from typing import List, Optional, Sequence

from runner import languages
from runner.catalog import (ChallengeInfo, UnknownChallenge, default_solution_dir, find_challenge,
                            resolve_solution, starter_files, starter_folder)
from runner.errors import UsageError
from runner.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from runner.judge.client import remote_command
from runner.listing import list_command
from runner.policy import INTERPRETER_TIMEOUT_S
from runner.progress import Progress, log
from runner.report import TestReport, json_safe, render_text
from runner.sandbox import jail

ACTIONS = ("run", "submit", "profile", "init", "validate", "list")


class _Parser(argparse.ArgumentParser):
    """argparse, except that a bad command line is a :class:`UsageError` (one line on stderr,
    and with --json the one object on stdout) instead of argparse's own exit."""

    def error(self, message: str):
        raise UsageError(f"{message} (run_challenge.py --help lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="run_challenge.py",
        description="Grade a CUDA, Triton, CuPy or PyTorch solution of a GPU kernel challenge.",
        epilog="The judge service: `run_challenge.py serve` (its options: `run_challenge.py "
               "serve --help`; docs/judge.md).")
    parser.add_argument("challenge", nargs="?",
                        help="challenge folder, number (96) or slug (not needed for --action list)")
    parser.add_argument("--action", choices=ACTIONS, default="run",
                        help="run: the example test; submit: every test, then timing; "
                             "profile: every test, then one call of solve profiled (per-kernel "
                             "times, counters, a diagnosis; docs/profile.md); "
                             "init: copy the starter for --language to the solution path")
    parser.add_argument("--solution", type=Path,
                        help="solution file (default: <challenge>/solution/solution.<ext>)")
    parser.add_argument("--language", help="cuda, triton, cupy or pytorch (default: from the "
                                           "file name)")
    parser.add_argument("--device", default="auto", help="auto (default), cuda or cpu")
    parser.add_argument("--seed", type=int, default=0,
                        help="grading seed for the generated tests (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    parser.add_argument("--nvcc-flag", dest="nvcc_flags", action="append", default=[],
                        metavar="FLAG", help="an extra nvcc flag for CUDA solutions (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="wall-clock limit for the whole grading (default 300; 1200 for "
                             "Triton on the CPU, under its interpreter)")
    parser.add_argument("--memory-limit", type=float, default=None, metavar="GIB",
                        help="host memory for the submission, every process it starts counted "
                             "(default 16)")
    parser.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                        help="run the solution in this process (faster start, easier debugging; "
                             "no isolation or limits)")
    parser.add_argument("--remote", metavar="URL", default=None,
                        help="send the submission to a judge service instead of grading here "
                             "(or set SERVICE_URL)")
    return parser


def init_solution(info: ChallengeInfo, solution: Optional[Path], language: Optional[str]) -> int:
    if not language:
        raise UsageError("--action init needs --language (cuda, triton, cupy or pytorch)")
    lang = languages.normalize(language)
    starter = starter_files(info).get(lang)
    if starter is None:
        missing = starter_folder(info) / f"starter{languages.suffix(lang)}"
        raise UsageError(f"challenge {info.display} has no {lang} starter ({missing} is missing)")
    target = solution or default_solution_dir(info) / f"solution{languages.suffix(lang)}"
    if target.exists():
        log(f"{target} already exists; leaving it unchanged")
        return EXIT_OK
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(starter, target)
    log(f"created {target} from the {lang} starter; edit it, then run:\n"
        f"  python run_challenge.py {info.display} --solution {target} --action run")
    return EXIT_OK


def default_timeout(language: str, device_type: str) -> Optional[float]:
    """The grading's wall-clock limit when --timeout is not given (None: the sandbox's own
    default): longer for Triton on the CPU, where a large performance case under the
    interpreter takes minutes (98's: about 5)."""
    return INTERPRETER_TIMEOUT_S if language == "triton" and device_type == "cpu" else None


def check_limits(args: argparse.Namespace) -> None:
    """--timeout and --memory-limit: positive finite numbers (0 or less is a usage error, not
    the default or a time limit blamed on the solution)."""
    for option, value, unit in (("--timeout", args.timeout, "seconds"),
                                ("--memory-limit", args.memory_limit, "GiB")):
        if value is not None and not (value > 0 and value != float("inf")):
            raise UsageError(f"{option} {value:g} is not a limit: give a positive number of "
                             f"{unit}, or leave {option} out for the default")


def grade_command(args: argparse.Namespace, info: ChallengeInfo) -> int:
    solution, language = resolve_solution(info, args.solution, args.language)
    # before numpy loads: Triton's CPU interpreter (--no-sandbox) does many small numpy dots,
    # which OpenBLAS threads slow down a hundredfold on a busy machine
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # the jail starts first where the device is known without torch: its interpreter, torch
    # and CUDA context start beside this process's import of torch (runner/sandbox/warm.py)
    from runner.sandbox import warm   # no torch (the child's own import of it starts first)

    early = warm.start_for_cli(args.device, info.path, solution, language, args.sandbox)
    try:
        return _grade_command(args, info, solution, language, early)
    finally:
        if early is not None:
            early.discard()


def _grade_command(args: argparse.Namespace, info: ChallengeInfo, solution: Path, language: str,
                   early) -> int:
    with Progress() as progress:
        progress("starting (loading torch and the challenge)")
        # lazy: torch (seconds), only when grading
        from runner import devices
        from runner.grader.grade import grade_safely
        from runner.grader.options import GradeOptions
        from runner.sandbox.limits import Limits

        device = devices.resolve_device(args.device)
        if args.device == "auto" and device.type == "cpu":
            log("no CUDA GPU found: grading on the CPU (timing is skipped)")
        if args.sandbox:
            usable, why = jail.probe()
            if not usable:
                return refuse_unjailed(args, why)
        limits = Limits()
        timeout = args.timeout if args.timeout is not None else default_timeout(language,
                                                                                 device.type)
        if timeout:
            limits.timeout_s = timeout
        if args.memory_limit is not None:
            limits.host_memory_bytes = int(args.memory_limit * 2**30)
        if args.action == "profile" and device.type != "cuda":
            log("no GPU: nothing to profile; running the tests on the CPU")
        options = GradeOptions(action="submit" if args.action == "profile" else args.action,
                               profile=args.action == "profile", device=device, seed=args.seed,
                               nvcc_flags=list(args.nvcc_flags), isolate=args.sandbox,
                               limits=limits, progress=progress, parked=early)
        progress("computing the expected outputs with the reference")
        result = grade_safely(info, solution, language, options)
        if args.action == "profile":
            result.action = "profile"
    if args.json:
        print(result.to_json())
    else:
        print(render_text(result))
    return EXIT_OK if result.verdict in ("accepted", "compiled") else EXIT_REJECTED


def refuse_unjailed(args: argparse.Namespace, why: str) -> int:
    """No jail can be made: grade nothing (a submission would run with this user's rights)."""
    return usage_error(f"cannot grade in a jail: {why}. Install it (Debian/Ubuntu: apt-get "
                       f"install bubblewrap), or pass --no-sandbox to run the solution in this "
                       f"process, without isolation, for code you trust", args.json, args)


def interrupted(args: Optional[argparse.Namespace], tests: Sequence[TestReport] = ()) -> int:
    """Ctrl-C: one line "interrupted" (and with --json the one object, status ``interrupted``,
    with the tests that had run); what the grading started was stopped by the ``finally``
    blocks on the way here."""
    passed = sum(1 for t in tests if t.passed)
    ran = (f"; {len(tests)} test(s) had run, {passed} passed" if tests else "")
    print(f"interrupted{ran}", file=sys.stderr, flush=True)
    if args is not None and getattr(args, "json", False):
        print(json.dumps(json_safe({
            "status": "interrupted", "verdict": "interrupted",
            "message": f"interrupted (Ctrl-C) before grading finished{ran}",
            "challenge": str(args.challenge or ""), "language": str(args.language or ""),
            "action": args.action, "seed": args.seed,
            "tests": [asdict(t) for t in tests]}), indent=2), flush=True)
    return EXIT_INTERRUPTED


def usage_error(message: str, json_wanted: bool, args: Optional[argparse.Namespace]) -> int:
    """A usage error: one line on stderr, exit 2, and with --json the one object on stdout."""
    print(f"error: {message}", file=sys.stderr)
    if json_wanted:
        print(json.dumps({"status": "error", "verdict": "usage_error", "message": message,
                          "challenge": str(getattr(args, "challenge", "") or ""),
                          "language": str(getattr(args, "language", "") or ""),
                          "action": str(getattr(args, "action", "") or ""),
                          "tests": []}, indent=2), flush=True)
    return EXIT_USAGE


def _interrupt_once(signum, frame) -> None:
    """The first Ctrl-C stops the command; later ones are ignored, so that the clean-up
    (killing the child, removing its folder) cannot itself be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from runner.judge.serve import serve_main     # lazy: the judge's extras (yaml, fastapi)
        return serve_main(argv[1:])
    parser = build_parser()
    args = None
    try:
        previous = signal.signal(signal.SIGINT, _interrupt_once)
    except ValueError:            # not the main thread: leave signals alone
        previous = None
    try:
        args = parser.parse_args(argv)
        return run(args)
    except UsageError as exc:        # the command line itself (run() handles the rest)
        return usage_error(str(exc), "--json" in argv, args)
    except KeyboardInterrupt as exc:
        return interrupted(args, getattr(exc, "tests", ()))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            return list_command(args)
        if not args.challenge:
            raise UsageError("name a challenge: a folder, a number (96) or a slug")
        check_limits(args)
        if args.remote:
            return remote_command(args)
        info = find_challenge(args.challenge)
        if args.action == "init":
            return init_solution(info, args.solution, args.language)
        if args.action == "validate":
            from runner.authoring.validate import validate_command   # lazy: torch
            return validate_command(args, info)
        return grade_command(args, info)
    except (UsageError, UnknownChallenge) as exc:
        return usage_error(str(exc), args.json, args)


if __name__ == "__main__":
    sys.exit(main())
