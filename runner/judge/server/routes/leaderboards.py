"""The leaderboard routes: a board for everyone, and an admin's review of an entry.

  ``GET    /api/v1/leaderboards/{challenge}?accelerator=&language=``   the board
  ``DELETE /api/v1/leaderboards/{challenge}/entries/{submissionId}?reason=``   admin: remove
  ``POST   /api/v1/leaderboards/{challenge}/entries/{submissionId}/approve``   admin: rank a
                                                          held entry by its verification median
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from runner.judge.rejected import Rejected
from runner.judge.server.auth import bearer
from runner.judge.wire import normalize_language

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService


def leaderboard_routes(service: "JudgeService") -> APIRouter:
    router = APIRouter()
    tokens = service.tokens

    def board_args(challenge: str, accelerator: Optional[str], language: Optional[str]):
        info = service.challenge_set.find(challenge)
        acc = service.accelerators.resolve(accelerator)
        lang = normalize_language(language) if language else None
        return info.path.name, acc, lang

    @router.get("/api/v1/leaderboards/{challenge}")
    async def leaderboard(challenge: str, accelerator: Optional[str] = None,
                          language: Optional[str] = None) -> JSONResponse:
        name, acc, lang = board_args(challenge, accelerator, language)
        board = await run_in_threadpool(service.leaderboard.board, name, acc, lang)
        return JSONResponse(board)

    async def review(request: Request, challenge: str, submission_id: str, action: str,
                     reason: str) -> JSONResponse:
        who = tokens.authenticate(bearer(request.headers.get("authorization")))
        if not who.has("admin"):
            raise Rejected("only an admin may review leaderboard entries", "forbidden", 403)
        name = service.challenge_set.find(challenge).path.name
        found = await run_in_threadpool(service.leaderboard.candidate, submission_id)
        if found is None or found.challenge != name:
            raise Rejected(f"no leaderboard entry for submission "
                           f"{submission_id[:64]!r} on {name}", "not_found", 404)
        entry = await run_in_threadpool(service.leaderboard.review, submission_id, action,
                                        who.name, reason[:500])
        return JSONResponse({"entry": entry.to_dict()})

    @router.delete("/api/v1/leaderboards/{challenge}/entries/{submission_id}")
    async def remove_entry(request: Request, challenge: str, submission_id: str,
                           reason: str = "") -> JSONResponse:
        return await review(request, challenge, submission_id, "remove", reason)

    @router.post("/api/v1/leaderboards/{challenge}/entries/{submission_id}/approve")
    async def approve_entry(request: Request, challenge: str, submission_id: str,
                            reason: str = "") -> JSONResponse:
        return await review(request, challenge, submission_id, "approve", reason)

    return router
