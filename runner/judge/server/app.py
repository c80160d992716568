"""The judge's ASGI app (FastAPI): the route groups of :mod:`runner.judge.server.routes`, the
page's static files, and a lifespan that starts and stops the service's background threads.
Every route is a thin layer over :class:`JudgeService`; the routes are listed in each group's
module."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from runner.judge.rejected import Rejected
from runner.judge.server.routes.challenges import challenge_routes
from runner.judge.server.routes.http import refusal
from runner.judge.server.routes.leaderboards import leaderboard_routes
from runner.judge.server.routes.operations import operations_routes
from runner.judge.server.routes.page import STATIC, page_routes
from runner.judge.server.routes.submissions import submission_routes
from runner.judge.server.routes.workers import worker_routes
from runner.judge.server.service import JudgeService


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
    app.add_exception_handler(Rejected, refusal)   # every HTTP route's refusal, one place
    for routes in (submission_routes, challenge_routes, operations_routes, worker_routes,
                   page_routes, leaderboard_routes):
        app.include_router(routes(service))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
