"""What the judge offers, for users and the page: its challenges (a list, and one with its
spec, languages and starters) and its accelerators.

  ``GET    /api/v1/challenges``, ``/api/v1/accelerators``
  ``GET    /api/v1/challenges/{challenge}``              its spec (HTML), languages, starters
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any, Dict

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from runner import languages
from runner.catalog import starter_files
from runner.judge.rejected import Rejected
from runner.judge.wire import normalize_language

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService

TITLE_RE = re.compile(r"<h[12][^>]*>(.*?)</h[12]>", re.S | re.I)


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


def challenge_routes(service: "JudgeService") -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/challenges")
    async def http_challenges() -> Dict[str, Any]:
        return {"challenges": service.challenge_set.listing()}

    @router.get("/api/v1/accelerators")
    async def http_accelerators() -> Dict[str, Any]:
        return {"accelerators": service.accelerators.listing()}

    @router.get("/api/v1/challenges/{challenge}")
    async def challenge_detail(challenge: str) -> JSONResponse:
        info = service.challenge_set.find(challenge)
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

    return router
