"""``run_challenge.py``: grade a solution locally (run, submit), or set one up (init).

Exit codes: 0 accepted (or, for CUDA without a GPU, compiled), 1 any other verdict,
2 a usage error. With ``--json`` stdout carries exactly one JSON object; logs go to stderr.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import List, Optional

from runner import languages
from runner.challenge import (ChallengeInfo, UnknownChallenge, find_challenge, starter_files,
                              starter_folders)
from runner.errors import UsageError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
ACTIONS = ("run", "submit", "init", "validate", "list")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_challenge.py",
        description="Grade a CUDA, Triton, CuPy or PyTorch solution of a GPU kernel challenge.")
    parser.add_argument("challenge", nargs="?",
                        help="challenge folder, number (96) or slug (not needed for --action list)")
    parser.add_argument("--action", choices=ACTIONS, default="run",
                        help="run: the example test; submit: every test, then timing; "
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
                        help="wall-clock limit for the whole grading")
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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_solution_dir(info: ChallengeInfo) -> Path:
    return info.path / "solution"


def resolve_solution(info: ChallengeInfo, solution: Optional[Path],
                     language: Optional[str]) -> tuple[Path, str]:
    if solution is None:
        folder = default_solution_dir(info)
        if language:
            solution = folder / f"solution{languages.suffix(language)}"
        else:
            found = sorted(p for p in folder.glob("solution.*") if p.is_file()) if folder.is_dir() else []
            if len(found) != 1:
                raise UsageError(
                    f"no solution given: pass --solution FILE or --language L "
                    f"(`--action init --language L` creates {folder}/solution.<ext> from the starter)"
                    if not found else
                    f"several solutions in {folder}: pass --solution or --language")
            solution = found[0]
    lang = languages.normalize(language) if language else languages.detect(solution)
    if not solution.is_file():
        raise UsageError(f"solution file {solution} does not exist; create it with "
                         f"`python run_challenge.py {info.display} --action init --language {lang}`")
    return solution, lang


def init_solution(info: ChallengeInfo, solution: Optional[Path], language: Optional[str]) -> int:
    if not language:
        raise UsageError("--action init needs --language (cuda, triton, cupy or pytorch)")
    lang = languages.normalize(language)
    starter = starter_files(info).get(lang)
    if starter is None:
        places = " or ".join(str(f / f"starter{languages.suffix(lang)}") for f in starter_folders(info))
        raise UsageError(f"challenge {info.display} has no {lang} starter ({places} is missing)")
    target = solution or default_solution_dir(info) / f"solution{languages.suffix(lang)}"
    if target.exists():
        log(f"{target} already exists; leaving it unchanged")
        return EXIT_OK
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(starter, target)
    log(f"created {target} from the {lang} starter; edit it, then run:\n"
        f"  python run_challenge.py {info.display} --solution {target} --action run")
    return EXIT_OK


def grade_command(args: argparse.Namespace, info: ChallengeInfo) -> int:
    from runner import devices
    from runner.grade import GradeOptions, grade_safely
    from runner.sandbox.parent import Limits
    from runner.report import render_text

    solution, language = resolve_solution(info, args.solution, args.language)
    device = devices.resolve_device(args.device)
    if args.device == "auto" and device.type == "cpu":
        log("no CUDA GPU found: grading on the CPU (timing is skipped)")
    if args.sandbox:
        from runner.sandbox import jail
        usable, why = jail.probe()
        if not usable:
            log(f"warning: this grading is not isolated: {why}")
    limits = Limits()
    if args.timeout:
        limits.timeout_s = args.timeout
    if args.memory_limit:
        limits.host_memory_bytes = int(args.memory_limit * 2**30)
    options = GradeOptions(action=args.action, device=device, seed=args.seed,
                           nvcc_flags=list(args.nvcc_flags), isolate=args.sandbox, limits=limits,
                           progress=lambda msg: log(f"... {msg}"))
    result = grade_safely(info, solution, language, options)
    if args.json:
        print(result.to_json())
    else:
        print(render_text(result))
    return EXIT_OK if result.verdict in ("accepted", "compiled") else EXIT_REJECTED


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from runner.judge.cli import serve_main
        return serve_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.action == "list":
            from runner.authoring.listing import list_command
            return list_command(args)
        if not args.challenge:
            raise UsageError("name a challenge: a folder, a number (96) or a slug")
        if args.remote:
            from runner.judge.client import remote_command
            return remote_command(args)
        info = find_challenge(args.challenge)
        if args.action == "init":
            return init_solution(info, args.solution, args.language)
        if args.action == "validate":
            from runner.authoring.validate import validate_command
            return validate_command(args, info)
        return grade_command(args, info)
    except (UsageError, UnknownChallenge) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
