"""The judge's store, the source of truth for submissions, their events, leases and
admissions: :mod:`.sql` is its logic (the SQL both back ends share), :mod:`.sqlite` and
:mod:`.postgres` the two back ends, :mod:`.records` the schema and the records it takes and
gives. :func:`open_store` opens one from its URL: SQLite (one machine) or PostgreSQL (a fleet)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from runner.judge.server.storage.postgres import PostgresStore
from runner.judge.server.storage.sql import SqlStore
from runner.judge.server.storage.sqlite import SQLiteStore


def open_store(url: Optional[str], default_dir: Path) -> SqlStore:
    """``sqlite:///path`` (or a plain path, or None: ``default_dir/judge.sqlite3``) or
    ``postgresql://...``."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url and url.startswith("sqlite:///"):
        return SQLiteStore(Path(url[len("sqlite:///"):]))
    if url and "://" in url:
        raise ValueError(f"unsupported store URL {url.split('://')[0]}://...: use sqlite:///PATH "
                         f"or postgresql://...")
    return SQLiteStore(Path(url) if url else default_dir / "judge.sqlite3")
