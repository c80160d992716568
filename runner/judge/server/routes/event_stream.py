"""A submission's events sent over its WebSocket as they are stored, up to its terminal one
(or, when the client follows the leaderboard, up to the final leaderboard decision). A stream
reads the store only when this process noted a change, or every :data:`REREAD_S` seconds for
changes another API process made."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Dict

from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool

from runner.judge.wire import TERMINAL_STATUSES

if TYPE_CHECKING:   # pragma: no cover
    from runner.judge.server.service import JudgeService

POLL_S = 0.1           # how often a stream looks for a change notice (in memory)
REREAD_S = 2.0         # and re-reads the store regardless (changes made by another API process)


async def send_and_close(ws: WebSocket, message: Dict[str, Any]) -> None:
    await ws.send_text(json.dumps(message))
    await ws.close()


async def stream_events(ws: WebSocket, service: "JudgeService", submission_id: str, after: int,
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
