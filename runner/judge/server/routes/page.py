"""The judge's web page and its leaderboard routes, added to the app by :func:`add_web_routes`.

``GET /`` is a single page (``runner/judge/server/static/``: plain HTML, CSS and JavaScript, no build
step; KaTeX vendored under ``static/vendor/`` with its licence by ``tools/vendor_web.py``)
that uses only the judge's own API: nothing is fetched from another origin (the page's
Content-Security-Policy forbids it).

Routes added here:
  ``GET    /``, ``/static/...``                         the page
  ``GET    /api/v1/me``                                  who the token is
  ``GET    /api/v1/challenges/{challenge}``              its spec (HTML), languages, starters
  ``GET    /api/v1/leaderboards/{challenge}?accelerator=&language=``   the board
  ``DELETE /api/v1/leaderboards/{challenge}/entries/{submissionId}?reason=``   admin: remove
  ``POST   /api/v1/leaderboards/{challenge}/entries/{submissionId}/approve``   admin: rank a
                                                          held entry by its verification median
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from runner import languages
from runner.catalog import starter_files
from runner.judge.server.auth import bearer
from runner.judge.wire import error_message, normalize_language
from runner.judge.rejected import Rejected

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService

STATIC = Path(__file__).resolve().parent.parent / "static"
# scripts, styles and fonts only from this judge; KaTeX writes inline style attributes
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "font-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
TITLE_RE = re.compile(r"<h[12][^>]*>(.*?)</h[12]>", re.S | re.I)


def _error(exc: Exception) -> JSONResponse:
    return JSONResponse(error_message(exc.message, exc.code), status_code=exc.http_status)


def challenge_title(spec: str, fallback: str) -> str:
    match = TITLE_RE.search(spec)
    if not match:
        return fallback
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip() or fallback


def available_languages():
    out = []
    for name in languages.LANGUAGES:
        try:
            out.append(normalize_language(name))
        except Rejected:
            pass
    return out


def add_web_routes(app: FastAPI, service: "JudgeService") -> None:
    tokens = service.tokens

    def principal(request: Request):
        return tokens.authenticate(bearer(request.headers.get("authorization")))

    def page_headers() -> Dict[str, str]:
        return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers=page_headers())

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/v1/me")
    async def me(request: Request) -> JSONResponse:
        try:
            who = principal(request)
        except Rejected as exc:
            return _error(exc)
        return JSONResponse({"name": who.name, "roles": sorted(who.roles),
                             "admin": who.has("admin"),
                             "auth": "off" if tokens.open_access else "on"})

    @app.get("/api/v1/challenges/{challenge}")
    async def challenge_detail(challenge: str) -> JSONResponse:
        try:
            info = service.catalogue.find(challenge)
        except Rejected as exc:
            return _error(exc)
        spec_path = info.path / "challenge.html"
        spec = spec_path.read_text(encoding="utf-8", errors="replace") if spec_path.is_file() \
            else "<p>This challenge has no written spec (challenge.html).</p>"
        langs = available_languages()
        starters = {lang: path.read_text(encoding="utf-8", errors="replace")
                    for lang, path in starter_files(info).items() if lang in langs}
        return JSONResponse({"id": info.display, "number": info.number, "slug": info.slug,
                             "difficulty": info.difficulty,
                             "title": challenge_title(spec, info.slug.replace("_", " ")),
                             "spec": spec, "languages": langs, "starters": starters,
                             "fileNames": {lang: f"solution{languages.suffix(lang)}"
                                           for lang in langs}})

    def board_args(challenge: str, accelerator: Optional[str], language: Optional[str]):
        info = service.catalogue.find(challenge)
        acc = service.accelerators.resolve(accelerator)
        lang = normalize_language(language) if language else None
        return info.path.name, acc, lang

    @app.get("/api/v1/leaderboards/{challenge}")
    async def leaderboard(challenge: str, accelerator: Optional[str] = None,
                          language: Optional[str] = None) -> JSONResponse:
        try:
            name, acc, lang = board_args(challenge, accelerator, language)
        except Rejected as exc:
            return _error(exc)
        board = await run_in_threadpool(service.leaderboard.board, name, acc, lang)
        return JSONResponse(board)

    async def review(request: Request, challenge: str, submission_id: str, action: str,
                     reason: str) -> JSONResponse:
        try:
            who = principal(request)
            if not who.has("admin"):
                raise Rejected("only an admin may review leaderboard entries", "forbidden", 403)
            name = service.catalogue.find(challenge).path.name
            found = await run_in_threadpool(service.leaderboard.candidate, submission_id)
            if found is None or found.challenge != name:
                raise Rejected(f"no leaderboard entry for submission "
                               f"{submission_id[:64]!r} on {name}", "not_found", 404)
            entry = await run_in_threadpool(service.leaderboard.review, submission_id, action,
                                            who.name, reason[:500])
        except Rejected as exc:
            return _error(exc)
        return JSONResponse({"entry": entry.to_dict()})

    @app.delete("/api/v1/leaderboards/{challenge}/entries/{submission_id}")
    async def remove_entry(request: Request, challenge: str, submission_id: str,
                           reason: str = "") -> JSONResponse:
        return await review(request, challenge, submission_id, "remove", reason)

    @app.post("/api/v1/leaderboards/{challenge}/entries/{submission_id}/approve")
    async def approve_entry(request: Request, challenge: str, submission_id: str,
                            reason: str = "") -> JSONResponse:
        return await review(request, challenge, submission_id, "approve", reason)

