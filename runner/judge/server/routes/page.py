"""The judge's web page: ``GET /`` is a single page (``runner/judge/server/static/``: plain
HTML, CSS and JavaScript, no build step; KaTeX vendored under ``static/vendor/`` with its
licence by ``tools/vendor_web.py``) that uses only the judge's own API: nothing is fetched from
another origin (the page's Content-Security-Policy forbids it).

  ``GET    /``, ``/static/...``                         the page (the app mounts :data:`STATIC`)
  ``GET    /api/v1/me``                                  who the token is
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from runner.judge.server.auth import bearer

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService

STATIC = Path(__file__).resolve().parent.parent / "static"
# scripts, styles and fonts only from this judge; KaTeX writes inline style attributes
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "font-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def page_headers() -> Dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def page_routes(service: "JudgeService") -> APIRouter:
    router = APIRouter()
    tokens = service.tokens

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers=page_headers())

    @router.get("/api/v1/me")
    async def me(request: Request) -> JSONResponse:
        who = tokens.authenticate(bearer(request.headers.get("authorization")))
        return JSONResponse({"name": who.name, "roles": sorted(who.roles),
                             "admin": who.has("admin"),
                             "auth": "off" if tokens.open_access else "on"})

    return router
