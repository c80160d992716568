"""What every route group shares: a refusal as its JSON answer, and a request body read under a
size limit (refused as soon as it is known to be too large, before it is all read)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from runner.judge.rejected import Rejected
from runner.judge.wire import error_message


def refusal(request: Request, exc: Rejected) -> JSONResponse:
    """The app's answer to a :class:`Rejected` raised by any HTTP route (registered once by
    create_app): its JSON error with its status."""
    return JSONResponse(error_message(exc.message, exc.code), status_code=exc.http_status)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Rejected(f"request too large: {int(declared):,} bytes (the limit is {limit:,})",
                       "too_large", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(f"request too large: over {limit:,} bytes", "too_large", 413)
        chunks.append(chunk)
    return b"".join(chunks)
