"""The workers' routes, for a token with the worker role (``Authorization: Bearer``): claim a
submission, say whether one serves its queue, and, holding a lease, renew it, add progress
events, store the result or release the submission after a fault of its own.

  ``POST /api/v1/worker/claim``, ``/api/v1/worker/presence``, ``/api/v1/worker/{id}/heartbeat``,
  ``.../events``, ``.../complete``, ``.../release``
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from runner.judge.rejected import Rejected
from runner.judge.server.auth import bearer
from runner.judge.server.routes.http import read_body
from runner.judge.wire import decode_message

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService

WORKER_BODY_BYTES = 8 << 20


def _lease(payload: Dict[str, Any]) -> str:
    lease = payload.get("lease")
    if not isinstance(lease, str) or not lease:
        raise Rejected("missing `lease` (the id the claim returned)")
    return lease


def worker_routes(service: "JudgeService") -> APIRouter:
    router = APIRouter()
    tokens = service.tokens

    def worker_name(request: Request, payload: Dict[str, Any]) -> str:
        principal = tokens.authenticate_worker(bearer(request.headers.get("authorization")))
        instance = str(payload.get("worker") or "worker")[:100]
        return f"{principal.name}/{instance}"

    async def worker_payload(request: Request) -> Dict[str, Any]:
        raw = await read_body(request, WORKER_BODY_BYTES)
        return decode_message(raw, WORKER_BODY_BYTES) if raw.strip() else {}

    @router.post("/api/v1/worker/claim")
    async def worker_claim(request: Request) -> Response:
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
        if job is None:
            return Response(status_code=204)
        return JSONResponse(job.to_dict())

    @router.post("/api/v1/worker/presence")
    async def worker_presence(request: Request) -> JSONResponse:
        payload = await worker_payload(request)
        name = worker_name(request, payload)
        await run_in_threadpool(service.presence, name, str(payload.get("accelerator") or ""),
                                str(payload.get("state") or ""),
                                str(payload.get("reason") or ""))
        return JSONResponse({"ok": True})

    @router.post("/api/v1/worker/{submission_id}/heartbeat")
    async def worker_heartbeat(request: Request, submission_id: str) -> JSONResponse:
        payload = await worker_payload(request)
        worker_name(request, payload)
        alive = await run_in_threadpool(service.heartbeat, submission_id, _lease(payload))
        if not alive:
            return JSONResponse({"alive": False, "output": "the lease was taken back: stop "
                                 "grading this submission"}, status_code=409)
        return JSONResponse({"alive": True})

    @router.post("/api/v1/worker/{submission_id}/events")
    async def worker_event(request: Request, submission_id: str) -> JSONResponse:
        payload = await worker_payload(request)
        worker_name(request, payload)
        status = str(payload.get("status") or "running")
        seq = await run_in_threadpool(service.add_event, submission_id, _lease(payload),
                                      status, payload.get("output", ""))
        if seq is None:
            return JSONResponse({"alive": False}, status_code=409)
        return JSONResponse({"seq": seq})

    @router.post("/api/v1/worker/{submission_id}/complete")
    async def worker_complete(request: Request, submission_id: str) -> JSONResponse:
        payload = await worker_payload(request)
        worker_name(request, payload)
        result = payload.get("result")
        if not isinstance(result, dict):
            raise Rejected("`result` must be the grading's result object")
        outcome = await run_in_threadpool(service.complete, submission_id, _lease(payload),
                                          result)
        if not outcome.stored:
            return JSONResponse({"stored": False, "reason": outcome.reason}, status_code=409)
        return JSONResponse({"stored": True})

    @router.post("/api/v1/worker/{submission_id}/release")
    async def worker_release(request: Request, submission_id: str) -> JSONResponse:
        payload = await worker_payload(request)
        worker_name(request, payload)
        t = await run_in_threadpool(service.release, submission_id, _lease(payload),
                                    str(payload.get("reason") or "unknown fault"))
        if t is None:
            return JSONResponse({"released": False}, status_code=409)
        return JSONResponse({"released": True, "outcome": t.outcome})

    return router
