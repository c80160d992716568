"""The operators' routes: ``GET /healthz`` (503 unless every accelerator's queue has a live
worker, saying which does not and why) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService


def operations_routes(service: "JudgeService") -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            health = service.health()
        except Exception as exc:  # noqa: BLE001 - the store is unreachable
            return JSONResponse({"status": "unavailable", "error": str(exc)[:300]}, 503)
        return JSONResponse(health, 200 if health["status"] == "ok" else 503)

    @router.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return router
