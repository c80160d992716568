"""``run_challenge.py CHALLENGE --remote URL``: send a submission to a judge instead of grading
here, written the way LeetGPU's public client is (websocket-client; connect to
``<URL>/api/v1/ws/submit``; send one JSON message; read ``{status, output}`` messages until a
terminal status). It prints progress to stderr and then the same report (or ``--json``
object) as a local run.

Our additions, harmless to a LeetGPU server: the message carries a ``submissionId`` made here,
so when the connection drops the client reconnects and resumes after the last event it saw
(``after``) instead of submitting twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from runner import environment, languages
from runner.catalog import UnknownChallenge, find_challenge, refuse_folder, resolve_solution
from runner.errors import UsageError
from runner.exit_codes import EXIT_OK, EXIT_REJECTED
from runner.judge.wire import TERMINAL_STATUSES, file_list
from runner.progress import Progress
from runner.protocol import Verdict
from runner.report import Result, TestReport, render_text

RECONNECTS = 5


class RemoteError(Exception):
    """The judge refused the submission or could not be reached; the message says why."""


def socket_url(base: str) -> str:
    base = base.strip().rstrip("/")
    for old, new in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(old):
            base = new + base[len(old):]
    if not base.startswith(("ws://", "wss://")):
        base = "ws://" + base
    return base + "/api/v1/ws/submit"


def build_message(action: str, file_name: str, content: str, language: str,
                  token: Optional[str], challenge_code: Optional[str] = None,
                  challenge: Optional[str] = None, accelerator: Optional[str] = None,
                  submission_id: Optional[str] = None) -> Dict[str, Any]:
    """LeetGPU's message, with our optional ``challenge`` and ``submissionId``."""
    submission: Dict[str, Any] = {"files": file_list(file_name, content), "language": language,
                                  "accelerator": accelerator, "mode": "accelerated",
                                  "public": False}
    if challenge_code is not None:
        submission["challengeCode"] = challenge_code
    if challenge is not None:
        submission["challenge"] = challenge
    message: Dict[str, Any] = {"action": action, "token": token, "submission": submission}
    if submission_id:
        message["submissionId"] = submission_id
    return message


def stream(url: str, message: Dict[str, Any], timeout_s: float = 3600.0,
           reconnects: int = RECONNECTS) -> Iterator[Dict[str, Any]]:
    """Every ``{status, output}`` message the judge sends for ``message``, up to the terminal
    one; reconnects (resuming after the last event seen) when the connection drops."""
    import websocket        # lazy: the judge extra (websocket-client), only with --remote

    deadline = time.monotonic() + timeout_s
    last_seq, failures = -1, 0
    while True:
        if last_seq >= 0:
            message = {**message, "after": last_seq}
        try:
            ws = websocket.create_connection(socket_url(url), timeout=30)
        except (OSError, websocket.WebSocketException) as exc:
            failures += 1
            if failures > reconnects or "submissionId" not in message:
                raise RemoteError(f"cannot reach the judge at {url}: {exc}")
            time.sleep(min(2.0 ** failures, 10.0))
            continue
        try:
            ws.send(json.dumps(message))
            while True:
                if time.monotonic() > deadline:
                    raise RemoteError(f"no result within {timeout_s:g} s; the submission goes "
                                      f"on: fetch it later with GET /api/v1/submissions/"
                                      f"{message.get('submissionId', '<id>')}")
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue       # queued and quiet: keep waiting
                if not raw:
                    raise websocket.WebSocketConnectionClosedException("closed")
                msg = json.loads(raw)
                failures = 0
                if isinstance(msg.get("seq"), int):
                    last_seq = msg["seq"]
                yield msg
                if msg.get("status") in TERMINAL_STATUSES:
                    return
        except (OSError, websocket.WebSocketException) as exc:
            failures += 1
            if failures > reconnects or "submissionId" not in message:
                raise RemoteError(f"lost the connection to the judge ({exc}) after event "
                                  f"{last_seq}")
            time.sleep(min(2.0 ** failures, 10.0))
        finally:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass


def result_from_output(output: Any) -> Result:
    fields = {f.name for f in dataclasses.fields(Result)}
    data = {k: v for k, v in output.items() if k in fields}
    test_fields = {f.name for f in dataclasses.fields(TestReport)}
    data["tests"] = [{k: v for k, v in t.items() if k in test_fields}
                     for t in data.get("tests") or []]
    data.setdefault("verdict", Verdict.INTERNAL_ERROR.value)
    return Result.from_dict(data)


def with_users_path(output: Dict[str, Any], language: str, sent_name: str,
                    users_path: str) -> Dict[str, Any]:
    """The judge's result with the worker's copy of the solution (``/tmp/.../solution.cu`` in a
    traceback or a compiler's message) named as the user's own file."""
    names = {f"solution{languages.suffix(language)}", sent_name}
    worker_copy = re.compile(r"(?<![\w./-])(?:/(?:[^\s\"'():,/]+/)*)?(?:"
                             + "|".join(map(re.escape, names)) + r")(?![\w.])")
    out = dict(output)
    for key in ("message", "details", "logs"):
        if isinstance(out.get(key), str):
            out[key] = worker_copy.sub(lambda m: users_path, out[key])
    return out


def submission_from_args(args: argparse.Namespace) -> Tuple[Path, str, str, Optional[str], Optional[str]]:
    """(the solution file, content, language, challengeCode, challenge) for the CLI's arguments."""
    try:
        info = find_challenge(args.challenge)
    except UnknownChallenge:
        info = None
    if info is not None:
        solution, language = resolve_solution(info, args.solution, args.language)
        code = (info.path / "challenge.py").read_text(encoding="utf-8")
        challenge = None
    else:                       # not here: let the judge find it by number or slug
        if args.solution is None:
            raise UsageError(f"challenge {args.challenge!r} is not in this checkout: pass "
                             f"--solution FILE")
        solution = args.solution
        refuse_folder(solution)
        language = languages.normalize(args.language) if args.language else languages.detect(solution)
        code, challenge = None, str(args.challenge)
    if not solution.is_file():
        raise UsageError(f"solution file {solution} does not exist")
    return solution, solution.read_text(encoding="utf-8"), language, code, challenge


def remote_command(args: argparse.Namespace,
                   log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> int:
    url = args.remote or environment.service_url()
    if not url:
        raise UsageError("--remote needs a URL (or set $SERVICE_URL)")
    if args.action not in ("run", "submit", "profile"):
        raise UsageError("--remote sends `run`, `submit` or `profile` actions only")
    token = environment.client_token()
    solution, content, language, code, challenge = submission_from_args(args)
    name = solution.name
    if getattr(args, "seed", 0):
        log("note: --seed is ignored by a judge: it grades with a private seed of its own and "
            "reports it in the result")
    message = build_message(args.action, name, content, language, token, code, challenge,
                            environment.client_accelerator(),
                            uuid.uuid4().hex)
    timeout = float(getattr(args, "timeout", None) or 3600.0)
    terminal: Optional[Dict[str, Any]] = None
    try:
        with Progress(write=log) as progress:     # "... still ..." while the judge is quiet
            for msg in stream(url, message, timeout_s=timeout + 600):
                if msg.get("status") in TERMINAL_STATUSES:
                    terminal = msg
                else:
                    progress(f"[{msg.get('status')}] {msg.get('output')}")
    except RemoteError as exc:
        raise UsageError(str(exc)) from None
    assert terminal is not None
    output = terminal.get("output")
    if not isinstance(output, dict):     # refused before it was stored
        raise UsageError(f"the judge refused the submission: {output}"
                         + (f" ({terminal['code']})" if terminal.get("code") else ""))
    output = with_users_path(output, language, name, str(solution))
    result = result_from_output(output)
    if args.json:
        print(json.dumps(output, indent=2, default=str))
    else:
        log(f"submission {terminal.get('submissionId')} (seed {output.get('seed')})")
        print(render_text(result))       # the verdict last
    return EXIT_OK if result.verdict in (Verdict.ACCEPTED, Verdict.COMPILED) else EXIT_REJECTED
