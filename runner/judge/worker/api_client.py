"""The judge's worker endpoints, as a worker calls them (HTTP, with the worker's token)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import httpx

from runner.judge.worker.settings import WorkerSettings


class LeaseLost(Exception):
    """The API took the lease back (or the submission is finished): stop this job."""


class Api:
    """The judge's worker endpoints."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.http = httpx.Client(base_url=settings.url.rstrip("/"), timeout=30.0,
                                 headers={"Authorization": f"Bearer {settings.token}"})

    def _post(self, path: str, body: Dict[str, Any], timeout: Optional[float] = None) -> httpx.Response:
        body = {"worker": self.settings.name, **body}
        return self.http.post(path, json=body, timeout=timeout or 30.0)

    def claim(self, submission_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
        wait = 0 if submission_id else self.settings.claim_wait_s
        r = self._post("/api/v1/worker/claim",
                       {"accelerators": [self.settings.accelerator], "wait": wait,
                        "submissionId": submission_id}, timeout=wait + 30)
        if r.status_code == 204:
            return None
        if r.status_code in (401, 403):
            raise SystemExit(f"the judge refused this worker's token: {r.text[:200]}")
        r.raise_for_status()
        return r.json()

    def heartbeat(self, sid: str, lease: str) -> None:
        r = self._post(f"/api/v1/worker/{sid}/heartbeat", {"lease": lease})
        if r.status_code == 409:
            raise LeaseLost(sid)
        r.raise_for_status()

    def event(self, sid: str, lease: str, status: str, output: Any) -> None:
        r = self._post(f"/api/v1/worker/{sid}/events", {"lease": lease, "status": status,
                                                         "output": output}, timeout=10.0)
        if r.status_code == 409:
            raise LeaseLost(sid)
        r.raise_for_status()

    def complete(self, sid: str, lease: str, result: Dict[str, Any]) -> str:
        r = self._post(f"/api/v1/worker/{sid}/complete", {"lease": lease, "result": result})
        if r.status_code == 409:
            return str(r.json().get("reason", "stale"))
        r.raise_for_status()
        return "stored"

    def release(self, sid: str, lease: str, reason: str) -> None:
        self._post(f"/api/v1/worker/{sid}/release", {"lease": lease, "reason": reason})

    def presence(self, state: str, reason: str = "") -> None:
        r = self._post("/api/v1/worker/presence", {"accelerator": self.settings.accelerator,
                                                    "state": state, "reason": reason},
                       timeout=10.0)
        r.raise_for_status()

    def close(self) -> None:
        self.http.close()
