"""The submission protocol: LeetGPU's WebSocket message, parsed and validated. Shared by the
judge's programs: the server parses submissions and writes events, a worker names the status of
its progress lines, the client writes the message and reads the events.

In (one JSON text message, or an HTTP body)::

    {"action": "run" | "submit" | "profile", "token": "...",
     "submission": {"files": [{"name": "solution.cu", "content": "..."}],
                    "language": "cuda", "accelerator": "H100", "mode": "accelerated",
                    "public": false, "challengeCode": "<text of a challenge.py>"}}

Our extensions (all optional): ``submission.challenge`` (a number or a slug) instead of
``challengeCode``; ``submissionId`` (the idempotency key: sending the same id again resumes that
submission instead of creating another); ``after`` (resume: only events numbered above it).
Older clients' spellings ``gpu``, ``challenge_id`` and ``challengeId`` are accepted.

Out: a stream of ``{"status", "output", "submissionId", "seq"}``; intermediate statuses are
``queued``, ``compiling``, ``running`` and ``timing`` (``output`` a line of text); the last
message has a terminal status (``success``, ``error``, ``timeout``, ``oom``, ``interrupted``)
and, for a graded submission, ``output`` is the full result (``Result.to_dict()``). A
submission refused before it was stored ends with ``{"status": "error", "output": "<why>",
"code": "<machine-readable reason>"}``.

Everything here raises :class:`Rejected` with a message that says what to fix.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from runner.judge.rejected import Rejected
from runner.languages import ALIASES, LANGUAGES

TERMINAL_STATUSES = frozenset({"success", "error", "timeout", "oom", "interrupted"})
ACTIONS = ("run", "submit", "profile")   # profile: ours (docs/profile.md); never ranked

# languages LeetGPU's client may send that this judge does not grade
OTHER_LEETGPU_LANGUAGES = ("mojo", "jax", "cute", "mlx", "tinygrad")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
SUBMISSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_FILES = 1


@dataclass
class SubmitRequest:
    action: str
    language: str
    file_name: str
    content: str
    token: Optional[str] = None
    accelerator: Optional[str] = None          # as sent; resolved by the service
    challenge: Optional[Union[int, str]] = None
    challenge_code: Optional[str] = None
    submission_id: Optional[str] = None        # the client's idempotency key
    after: int = -1
    public: bool = False


def decode_message(raw: Union[str, bytes, None], max_bytes: int) -> Dict[str, Any]:
    """One JSON object from a WebSocket frame or HTTP body, within ``max_bytes``."""
    if raw is None:
        raise Rejected("empty message: send the submission as one JSON object")
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise Rejected(f"message too large: {size:,} bytes (the limit is {max_bytes:,})",
                       "too_large", 413)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("the message is not UTF-8 text: send the submission as a JSON "
                           "text message")
    if not raw.strip():
        raise Rejected("empty message: send the submission as one JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise Rejected(f"malformed JSON: {detail}")
    if not isinstance(data, dict):
        raise Rejected(f"the message must be a JSON object, not {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _field(data: Dict[str, Any], key: str, kinds, where: str, required: bool = False,
           names: str = ""):
    if key not in data or data[key] is None:
        if required:
            raise Rejected(f"missing field `{where}{key}`")
        return None
    value = data[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise Rejected(f"`{where}{key}` must be {names}, not a boolean")
    if not isinstance(value, kinds):
        raise Rejected(f"`{where}{key}` must be {names}, not {_kind(value)}")
    return value


def normalize_language(name: str) -> str:
    """Our name for a language LeetGPU's client sends; raises when this judge cannot grade it."""
    lowered = name.strip().lower()
    canonical = ALIASES.get(lowered, lowered)
    supported = ", ".join(LANGUAGES)
    if canonical in LANGUAGES:
        if importlib.util.find_spec(f"runner.languages.{canonical}") is None:
            raise Rejected(f"language {name!r} is not available on this judge",
                           "unsupported_language")
        return canonical
    if canonical in OTHER_LEETGPU_LANGUAGES:
        raise Rejected(f"language {name!r} is not supported by this judge (it grades "
                       f"{supported})", "unsupported_language")
    raise Rejected(f"unknown language {_short(name)!r}; choose one of: {supported}",
                   "unsupported_language")


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def check_file_name(name: str) -> None:
    if not FILE_NAME_RE.match(name) or ".." in name:
        raise Rejected(f"file name {_short(name)!r} is not allowed: use a plain name such as "
                       f"solution.cu (ASCII letters, digits, '.', '_' and '-'; no folders)")


def check_text(content: str, what: str, max_bytes: int) -> None:
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise Rejected(f"{what} is not valid UTF-8 text (it holds unpaired surrogates)")
    if size > max_bytes:
        raise Rejected(f"{what} is too large: {size:,} bytes (the limit is {max_bytes:,})",
                       "too_large", 413)
    if "\x00" in content:
        raise Rejected(f"{what} holds NUL characters: send source code as text, not binary")


def parse_submit(data: Dict[str, Any], max_file_bytes: int) -> SubmitRequest:
    """Validate a decoded submission message."""
    action = _field(data, "action", str, "", True, "\"run\", \"submit\" or \"profile\"")
    if action not in ACTIONS:
        raise Rejected(f"unknown action {_short(action)!r}: use \"run\", \"submit\" or "
                       f"\"profile\"")
    token = _field(data, "token", str, "", names="a string")
    submission_id = _field(data, "submissionId", str, "", names="a string")
    if submission_id is not None and not SUBMISSION_ID_RE.match(submission_id):
        raise Rejected("`submissionId` must be 8 to 64 characters from A-Z, a-z, 0-9, "
                       "'-' and '_' (a UUID is fine)")
    after = _field(data, "after", int, "", names="a whole number")
    sub = _field(data, "submission", dict, "", True, "an object")

    files = _field(sub, "files", list, "submission.", True, "a list of {name, content}")
    if len(files) != MAX_FILES:
        raise Rejected(f"`submission.files` must hold exactly one file, not {len(files)}")
    entry = files[0]
    if not isinstance(entry, dict):
        raise Rejected(f"`submission.files[0]` must be an object {{name, content}}, "
                       f"not {_kind(entry)}")
    name = _field(entry, "name", str, "submission.files[0].", True, "a string")
    content = _field(entry, "content", str, "submission.files[0].", True, "a string")
    check_file_name(name)
    check_text(content, f"file {name}", max_file_bytes)

    language = _field(sub, "language", str, "submission.", True, "a string such as \"cuda\"")
    language = normalize_language(language)
    accelerator = _field(sub, "accelerator", str, "submission.", names="a string such as \"H100\"")
    if accelerator is None:
        accelerator = _field(sub, "gpu", str, "submission.", names="a string such as \"H100\"")
    _field(sub, "mode", str, "submission.", names="a string")
    public = _field(sub, "public", bool, "submission.", names="true or false")

    code = _field(sub, "challengeCode", str, "submission.", names="the text of a challenge.py")
    if code is not None:
        check_text(code, "challengeCode", max_file_bytes)
    challenge = _field(sub, "challenge", (int, str), "submission.",
                       names="a challenge number or slug")
    for legacy in ("challengeId", "challenge_id"):
        if challenge is None:
            challenge = _field(sub, legacy, (int, str), "submission.",
                               names="a challenge number")
    if isinstance(challenge, str):
        challenge = challenge.strip()
        if not challenge or len(challenge) > 128:
            raise Rejected("`submission.challenge` must be a challenge number or slug")
    if challenge is None and code is None:
        raise Rejected("say which challenge: send `submission.challengeCode` (the text of "
                       "its challenge.py) or `submission.challenge` (a number or slug)")
    return SubmitRequest(action=action, language=language, file_name=name, content=content,
                         token=token, accelerator=accelerator, challenge=challenge,
                         challenge_code=code, submission_id=submission_id,
                         after=-1 if after is None else after, public=bool(public))


def status_of_progress(line: str) -> str:
    """The intermediate status for one of the grader's progress lines."""
    head = line.strip().lower()
    if head.startswith(("compiling", "loading", "building")):
        return "compiling"
    if head.startswith("timing"):
        return "timing"
    return "running"


def error_message(message: str, code: str) -> Dict[str, Any]:
    return {"status": "error", "output": message, "code": code}


def file_list(name: str, content: str) -> List[Dict[str, str]]:
    return [{"name": name, "content": content}]
