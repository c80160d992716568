"""Bearer tokens with roles, compared in constant time.

A presented token is hashed (SHA-256) and its digest compared with *every* configured digest
with :func:`hmac.compare_digest`, with no early exit, so neither the content of a token nor the
position of its entry shows in the time an answer takes. Roles:

- ``user``: submit, see one's own submissions;
- ``author``: also send challenge code that is not one of the server's challenges;
- ``worker``: the worker endpoints (claim, heartbeat, events, complete);
- ``admin``: see every submission.

``python -m runner.judge.server.auth new-token NAME [ROLE...]`` prints a fresh token and the config
entry that holds only its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass
from typing import FrozenSet, Iterable, List, Optional, Tuple

from runner.exit_codes import EXIT_OK, EXIT_USAGE
from runner.judge.config import TokenSpec
from runner.judge.rejected import Rejected

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: FrozenSet[str]

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles and role != "worker"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenRegistry:
    """The configured tokens. ``open_access``: no token needed (auth off, loopback only); a
    request without a token, or with one that is not configured, is the local anonymous user."""

    def __init__(self, open_access: bool):
        self.open_access = open_access
        self._entries: List[Tuple[bytes, Principal]] = []

    @classmethod
    def from_specs(cls, specs: Iterable[TokenSpec], open_access: bool) -> "TokenRegistry":
        registry = cls(open_access)
        for spec in specs:
            d = bytes.fromhex(spec.sha256) if spec.sha256 else digest(spec.token or "")
            registry._entries.append((d, Principal(spec.name, frozenset(spec.roles))))
        return registry

    def add(self, name: str, roles: Iterable[str], token: str) -> None:
        self._entries.append((digest(token), Principal(name, frozenset(roles))))

    def lookup(self, token: Optional[str]) -> Optional[Principal]:
        if not token:
            return None
        presented = digest(token)
        found: Optional[Principal] = None
        for d, principal in self._entries:     # every entry, no early exit
            if hmac.compare_digest(d, presented):
                found = principal
        return found

    def authenticate(self, token: Optional[str]) -> Principal:
        """The principal a user request acts as; raises :class:`Rejected`."""
        principal = self.lookup(token)
        if principal is not None:
            return principal
        if self.open_access:
            return Principal(ANONYMOUS, frozenset({"user", "author"}))
        if not token:
            raise Rejected("authentication required: send your token as \"token\" in the "
                           "message or as an `Authorization: Bearer` header", "unauthorized", 401)
        raise Rejected("invalid token", "unauthorized", 401)

    def authenticate_worker(self, token: Optional[str]) -> Principal:
        principal = self.lookup(token)
        if principal is None:
            raise Rejected("worker authentication required" if not token else "invalid token",
                           "unauthorized", 401)
        if "worker" not in principal.roles:
            raise Rejected(f"{principal.name} has no worker role", "forbidden", 403)
        return principal


def bearer(header: Optional[str]) -> Optional[str]:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "new-token":
        print("usage: python -m runner.judge.server.auth new-token NAME [ROLE ...]",
              file=sys.stderr)
        return EXIT_USAGE
    name, roles = argv[1], argv[2:] or ["user"]
    token = new_token()
    print(f"# give this token to {name} (it is shown once):\n#   {token}\n"
          f"# and put this entry under `tokens:` in the judge's config:\n"
          f"  - name: {name}\n    roles: [{', '.join(roles)}]\n"
          f"    sha256: {hashlib.sha256(token.encode()).hexdigest()}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
