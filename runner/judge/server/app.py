"""The judge's routes (FastAPI): LeetGPU's WebSocket protocol, the HTTP API, the workers'
endpoints, health and metrics. Every route is a thin layer over :class:`JudgeService`.

Users:
  ``WS   /api/v1/ws/submit``                   one JSON message in, ``{status, output}`` out
  ``POST /api/v1/submissions``                 the same message as an HTTP body -> 202
  ``GET  /api/v1/submissions``                 your submissions
  ``GET  /api/v1/submissions/{id}``            one submission, with its result when done
  ``GET  /api/v1/submissions/{id}/events?after=N&wait=S``   its numbered events after N
  ``GET  /api/v1/challenges``, ``/api/v1/accelerators``, ``/healthz``, ``/metrics``
Workers (a token with the worker role, as ``Authorization: Bearer``):
  ``POST /api/v1/worker/claim``, ``/api/v1/worker/presence``, ``/api/v1/worker/{id}/heartbeat``,
  ``.../events``, ``.../complete``, ``.../release``
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from runner.judge.server.auth import Principal, bearer
from runner.judge.wire import (TERMINAL_STATUSES, decode_message, error_message,
                                   parse_submit)
from runner.judge.rejected import Rejected
from runner.judge.server.service import JudgeService
from runner.judge.server.routes.page import add_web_routes

log = logging.getLogger("runner.judge")
POLL_S = 0.1           # how often a stream looks for a change notice (in memory)
REREAD_S = 2.0         # and re-reads the store regardless (changes made by another API process)
MAX_EVENTS_WAIT_S = 30.0
WORKER_BODY_BYTES = 8 << 20


def _error(exc: Exception) -> JSONResponse:
    return JSONResponse(error_message(exc.message, exc.code), status_code=exc.http_status)


async def _body(request: Request, limit: int) -> bytes:
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


def create_app(service: JudgeService, manage_service: bool = True) -> FastAPI:
    """The ASGI app; with ``manage_service`` its lifespan starts and stops the service's
    background threads (the reaper)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_service:
            service.start()
        try:
            yield
        finally:
            if manage_service:
                service.stop()

    app = FastAPI(title="GPU kernel judge", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.service = service
    limits = service.config.limits
    tokens = service.tokens

    def user(request: Request, token: Optional[str] = None) -> Principal:
        return tokens.authenticate(token or bearer(request.headers.get("authorization")))

    def worker_name(request: Request, payload: Dict[str, Any]) -> str:
        principal = tokens.authenticate_worker(bearer(request.headers.get("authorization")))
        instance = str(payload.get("worker") or "worker")[:100]
        return f"{principal.name}/{instance}"

    async def worker_payload(request: Request) -> Dict[str, Any]:
        raw = await _body(request, WORKER_BODY_BYTES)
        return decode_message(raw, WORKER_BODY_BYTES) if raw.strip() else {}

    # -- users: WebSocket -----------------------------------------------------------------------
    @app.websocket("/api/v1/ws/submit")
    async def ws_submit(ws: WebSocket) -> None:
        await ws.accept()
        try:
            try:
                frame = await asyncio.wait_for(ws.receive(), limits.first_message_timeout_s)
            except asyncio.TimeoutError:
                await _send_and_close(ws, error_message(
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
                await _send_and_close(ws, error_message(exc.message, exc.code))
                return
            await _stream(ws, service, record.id, req.after,
                          follow=data.get("followLeaderboard") is True)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            return   # the client went away; its submission goes on (it can resume)

    # -- users: HTTP ----------------------------------------------------------------------------
    @app.post("/api/v1/submissions")
    async def http_submit(request: Request) -> JSONResponse:
        try:
            raw = await _body(request, limits.max_message_bytes)
            data = decode_message(raw, limits.max_message_bytes)
            req = parse_submit(data, limits.max_file_bytes)
            principal = user(request, req.token)
            record, created = await run_in_threadpool(service.submit, principal, req)
        except Rejected as exc:
            return _error(exc)
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

    @app.get("/api/v1/submissions")
    async def http_list(request: Request, limit: int = 50) -> JSONResponse:
        try:
            principal = user(request)
        except Rejected as exc:
            return _error(exc)
        owner = None if principal.has("admin") else principal.name
        records = await run_in_threadpool(service.store.list, owner, max(1, min(limit, 500)))
        return JSONResponse({"submissions": [{k: v for k, v in r.summary().items() if k != "result"}
                                             for r in records]})

    @app.get("/api/v1/submissions/{submission_id}")
    async def http_get(request: Request, submission_id: str) -> JSONResponse:
        try:
            record = await _visible(request, submission_id)
        except Rejected as exc:
            return _error(exc)
        return JSONResponse(record.summary())

    @app.get("/api/v1/submissions/{submission_id}/events")
    async def http_events(request: Request, submission_id: str, after: int = -1,
                          wait: float = 0.0) -> JSONResponse:
        try:
            await _visible(request, submission_id)
        except Rejected as exc:
            return _error(exc)
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

    @app.get("/api/v1/challenges")
    async def http_challenges() -> Dict[str, Any]:
        return {"challenges": service.catalogue.listing()}

    @app.get("/api/v1/accelerators")
    async def http_accelerators() -> Dict[str, Any]:
        return {"accelerators": service.accelerators.listing()}

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            health = service.health()
        except Exception as exc:  # noqa: BLE001 - the store is unreachable
            return JSONResponse({"status": "unavailable", "error": str(exc)[:300]}, 503)
        return JSONResponse(health, 200 if health["status"] == "ok" else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    # -- workers --------------------------------------------------------------------------------
    @app.post("/api/v1/worker/claim")
    async def worker_claim(request: Request) -> Response:
        try:
            payload = await worker_payload(request)
            name = worker_name(request, payload)
            accelerators = payload.get("accelerators") or []
            if not isinstance(accelerators, list) or not all(isinstance(a, str) for a in accelerators):
                raise Rejected("`accelerators` must be a list of names")
            sid = payload.get("submissionId")
            wait = payload.get("wait") or 0
            if isinstance(wait, bool) or not isinstance(wait, (int, float)):
                raise Rejected("`wait` must be a number of seconds")
            job = await run_in_threadpool(service.claim, name, accelerators,
                                          str(sid) if sid else None, float(wait))
        except Rejected as exc:
            return _error(exc)
        if job is None:
            return Response(status_code=204)
        return JSONResponse(job.to_dict())

    @app.post("/api/v1/worker/presence")
    async def worker_presence(request: Request) -> JSONResponse:
        try:
            payload = await worker_payload(request)
            name = worker_name(request, payload)
            await run_in_threadpool(service.presence, name, str(payload.get("accelerator") or ""),
                                    str(payload.get("state") or ""),
                                    str(payload.get("reason") or ""))
        except Rejected as exc:
            return _error(exc)
        return JSONResponse({"ok": True})

    def _lease(payload: Dict[str, Any]) -> str:
        lease = payload.get("lease")
        if not isinstance(lease, str) or not lease:
            raise Rejected("missing `lease` (the id the claim returned)")
        return lease

    @app.post("/api/v1/worker/{submission_id}/heartbeat")
    async def worker_heartbeat(request: Request, submission_id: str) -> JSONResponse:
        try:
            payload = await worker_payload(request)
            worker_name(request, payload)
            alive = await run_in_threadpool(service.heartbeat, submission_id, _lease(payload))
        except Rejected as exc:
            return _error(exc)
        if not alive:
            return JSONResponse({"alive": False, "output": "the lease was taken back: stop "
                                 "grading this submission"}, status_code=409)
        return JSONResponse({"alive": True})

    @app.post("/api/v1/worker/{submission_id}/events")
    async def worker_event(request: Request, submission_id: str) -> JSONResponse:
        try:
            payload = await worker_payload(request)
            worker_name(request, payload)
            status = str(payload.get("status") or "running")
            seq = await run_in_threadpool(service.add_event, submission_id, _lease(payload),
                                          status, payload.get("output", ""))
        except Rejected as exc:
            return _error(exc)
        if seq is None:
            return JSONResponse({"alive": False}, status_code=409)
        return JSONResponse({"seq": seq})

    @app.post("/api/v1/worker/{submission_id}/complete")
    async def worker_complete(request: Request, submission_id: str) -> JSONResponse:
        try:
            payload = await worker_payload(request)
            worker_name(request, payload)
            result = payload.get("result")
            if not isinstance(result, dict):
                raise Rejected("`result` must be the grading's result object")
            outcome = await run_in_threadpool(service.complete, submission_id, _lease(payload),
                                              result)
        except Rejected as exc:
            return _error(exc)
        if not outcome.stored:
            return JSONResponse({"stored": False, "reason": outcome.reason}, status_code=409)
        return JSONResponse({"stored": True})

    @app.post("/api/v1/worker/{submission_id}/release")
    async def worker_release(request: Request, submission_id: str) -> JSONResponse:
        try:
            payload = await worker_payload(request)
            worker_name(request, payload)
            t = await run_in_threadpool(service.release, submission_id, _lease(payload),
                                        str(payload.get("reason") or "unknown fault"))
        except Rejected as exc:
            return _error(exc)
        if t is None:
            return JSONResponse({"released": False}, status_code=409)
        return JSONResponse({"released": True, "outcome": t.outcome})

    add_web_routes(app, service)     # the web page and the leaderboards (runner/judge/server/routes/page.py)
    return app


async def _send_and_close(ws: WebSocket, message: Dict[str, Any]) -> None:
    await ws.send_text(json.dumps(message))
    await ws.close()


async def _stream(ws: WebSocket, service: JudgeService, submission_id: str, after: int,
                  follow: bool = False) -> None:
    """Send the submission's events after ``after`` as they are stored, up to its terminal one;
    stop early (the job goes on) when the client goes away. With ``follow`` (the message's
    ``"followLeaderboard": true``) go on past the terminal event while a leaderboard decision
    about the submission is to come, up to the final ``leaderboard`` event."""
    gone = asyncio.Event()

    async def watch() -> None:
        try:
            while (await ws.receive()).get("type") != "websocket.disconnect":
                pass
        except Exception:  # noqa: BLE001 - any failure to read means the client is gone
            pass
        finally:
            gone.set()

    def awaiting() -> bool:
        return service.leaderboard.awaiting(submission_id)

    def terminal_before(seq: int) -> bool:
        return any(e.status in TERMINAL_STATUSES
                   for e in service.store.events(submission_id, -1, seq + 1))

    watcher = asyncio.create_task(watch())
    loop = asyncio.get_running_loop()
    last = after
    finished = follow and after >= 0 and await run_in_threadpool(terminal_before, after)
    try:
        while not gone.is_set():
            version, read_at = service.version(submission_id), loop.time()
            # asked before reading, so that a decision made meanwhile is in what is read next
            was_finished = finished
            pending = was_finished and await run_in_threadpool(awaiting)
            events = await run_in_threadpool(service.store.events, submission_id, last)
            for event in events:
                await ws.send_text(json.dumps(event.to_dict(submission_id), default=str))
                last = event.seq
                if event.status in TERMINAL_STATUSES:
                    if not follow:
                        await ws.close()
                        return
                    finished = True
                elif (finished and event.status == "leaderboard"
                      and isinstance(event.output, dict) and event.output.get("final")):
                    await ws.close()
                    return
            if was_finished and not pending:
                await ws.close()
                return
            if finished and not was_finished:
                continue            # the terminal event just came: ask about the leaderboard
            while (not gone.is_set() and service.version(submission_id) == version
                   and loop.time() - read_at < REREAD_S):
                try:
                    await asyncio.wait_for(gone.wait(), POLL_S)
                except asyncio.TimeoutError:
                    pass
    finally:
        watcher.cancel()
