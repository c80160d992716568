"""The users' routes: a submission over LeetGPU's WebSocket protocol or as an HTTP body, one's
submissions, one submission with its result, and its numbered events (long-polled).

  ``WS   /api/v1/ws/submit``                   one JSON message in, ``{status, output}`` out
  ``POST /api/v1/submissions``                 the same message as an HTTP body -> 202
  ``GET  /api/v1/submissions``                 your submissions
  ``GET  /api/v1/submissions/{id}``            one submission, with its result when done
  ``GET  /api/v1/submissions/{id}/events?after=N&wait=S``   its numbered events after N
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from runner.judge.rejected import Rejected
from runner.judge.server.auth import Principal, bearer
from runner.judge.server.routes.event_stream import POLL_S, REREAD_S, send_and_close, stream_events
from runner.judge.server.routes.http import read_body
from runner.judge.wire import TERMINAL_STATUSES, decode_message, error_message, parse_submit

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService

MAX_EVENTS_WAIT_S = 30.0


def submission_routes(service: "JudgeService") -> APIRouter:
    router = APIRouter()
    limits = service.config.limits
    tokens = service.tokens

    def user(request: Request, token: Optional[str] = None) -> Principal:
        return tokens.authenticate(token or bearer(request.headers.get("authorization")))

    @router.websocket("/api/v1/ws/submit")
    async def ws_submit(ws: WebSocket) -> None:
        await ws.accept()
        try:
            try:
                frame = await asyncio.wait_for(ws.receive(), limits.first_message_timeout_s)
            except asyncio.TimeoutError:
                await send_and_close(ws, error_message(
                    f"no submission arrived within {limits.first_message_timeout_s:g} s of "
                    f"connecting: send one JSON message right after connecting", "timeout"))
                return
            if frame.get("type") == "websocket.disconnect":
                return
            raw = frame.get("text") if frame.get("text") is not None else frame.get("bytes")
            try:
                data = decode_message(raw, limits.max_message_bytes)
                req = parse_submit(data, limits.max_file_bytes)
                principal = tokens.authenticate(req.token or bearer(ws.headers.get("authorization")))
                record, _ = await run_in_threadpool(service.submit, principal, req)
            except Rejected as exc:
                await send_and_close(ws, error_message(exc.message, exc.code))
                return
            await stream_events(ws, service, record.id, req.after,
                                follow=data.get("followLeaderboard") is True)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            return   # the client went away; its submission goes on (it can resume)

    @router.post("/api/v1/submissions")
    async def http_submit(request: Request) -> JSONResponse:
        raw = await read_body(request, limits.max_message_bytes)
        data = decode_message(raw, limits.max_message_bytes)
        req = parse_submit(data, limits.max_file_bytes)
        principal = user(request, req.token)
        record, created = await run_in_threadpool(service.submit, principal, req)
        body = {"submissionId": record.id, "state": record.state, "created": created,
                "events": f"/api/v1/submissions/{record.id}/events",
                "result": f"/api/v1/submissions/{record.id}"}
        return JSONResponse(body, status_code=202 if created else 200)

    async def _visible(request: Request, submission_id: str):
        principal = user(request)
        record = await run_in_threadpool(service.store.get, submission_id)
        if record is None or not service.may_see(principal, record):
            raise Rejected(f"no submission {submission_id[:64]!r} of yours", "not_found", 404)
        return record

    @router.get("/api/v1/submissions")
    async def http_list(request: Request, limit: int = 50) -> JSONResponse:
        principal = user(request)
        owner = None if principal.has("admin") else principal.name
        records = await run_in_threadpool(service.store.list, owner, max(1, min(limit, 500)))
        return JSONResponse({"submissions": [{k: v for k, v in r.summary().items() if k != "result"}
                                             for r in records]})

    @router.get("/api/v1/submissions/{submission_id}")
    async def http_get(request: Request, submission_id: str) -> JSONResponse:
        record = await _visible(request, submission_id)
        return JSONResponse(record.summary())

    @router.get("/api/v1/submissions/{submission_id}/events")
    async def http_events(request: Request, submission_id: str, after: int = -1,
                          wait: float = 0.0) -> JSONResponse:
        await _visible(request, submission_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait, MAX_EVENTS_WAIT_S))
        while True:
            version, read_at = service.version(submission_id), loop.time()
            events = await run_in_threadpool(service.store.events, submission_id, after)
            if events or loop.time() >= deadline:
                break
            while (service.version(submission_id) == version and loop.time() < deadline
                   and loop.time() - read_at < REREAD_S):
                await asyncio.sleep(POLL_S)
        done = any(e.status in TERMINAL_STATUSES for e in events)
        return JSONResponse({"submissionId": submission_id,
                             "events": [e.to_dict(submission_id) for e in events],
                             "done": done})

    return router
