"""The judge's one refusal: a request it will not do, whichever part says no (a malformed
message, a missing token, a full queue, an impossible review)."""

from __future__ import annotations


class Rejected(Exception):
    """A refused request: ``message`` says what to do, ``code`` is machine-readable, and
    ``http_status`` is the HTTP answer (a WebSocket client gets the message and code)."""

    def __init__(self, message: str, code: str = "bad_request", http_status: int = 400):
        super().__init__(message)
        self.message, self.code, self.http_status = message, code, http_status
