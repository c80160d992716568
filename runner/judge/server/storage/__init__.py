"""Opening the judge's store from its URL: SQLite (one machine) or PostgreSQL (a fleet)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from runner.judge.server.storage.sql import SqlStore, SQLiteStore
from runner.judge.server.storage.postgres import PostgresStore


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
