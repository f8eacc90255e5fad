"""Persistent answer cache (SQLite) shared by translation and the LLM baselines.

Key = SHA-256 over (backend, model, prompt version, source lang, target lang, text) — everything
that changes the answer — so editing a prompt template (its version is a hash of the file)
invalidates exactly what it should. Each answer is committed as soon as it arrives: a job killed
midway loses at most the requests in flight, and a re-run asks only for what is missing.
SQLite in WAL mode because it is in the standard library, survives kills and is safe to read
while another process writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

from ..errors import KbioxlmError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answer(
    key TEXT PRIMARY KEY, backend TEXT, model TEXT, prompt_version TEXT,
    source_lang TEXT, target_lang TEXT, text TEXT, output TEXT NOT NULL);
"""


def cache_key(backend: str, model: str, prompt_version: str, source_lang: str, target_lang: str, text: str) -> str:
    payload = json.dumps([backend, model, prompt_version, source_lang, target_lang, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Cache:
    """``get``/``put`` of answers; thread-safe (one connection behind a lock)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._mem: dict[str, str] = {}
        self.conn: sqlite3.Connection | None = None
        self.created: list[Path] = []  # what this cache created (folders, then the file): see discard_if_unused
        if self.path is not None:
            if self.path.is_dir():
                raise KbioxlmError(f"{self.path}: is a folder, expected a cache file name")
            missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise KbioxlmError(f"{self.path}: cannot create its folder ({exc.strerror or exc})") from exc
            self.created = [*missing, *([] if self.path.exists() else [self.path])]
            try:
                self.conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                self.discard_if_unused()
                raise KbioxlmError(f"{self.path}: not a kbioxlm cache ({exc})") from exc

    def get(self, key: str) -> str | None:
        with self._lock:
            if self.conn is None:
                return self._mem.get(key)
            row = self.conn.execute("SELECT output FROM answer WHERE key = ?", (key,)).fetchone()
            return None if row is None else row[0]

    def put(
        self,
        key: str,
        output: str,
        *,
        backend: str = "",
        model: str = "",
        prompt_version: str = "",
        source_lang: str = "",
        target_lang: str = "",
        text: str = "",
    ) -> None:
        with self._lock:
            if self.conn is None:
                self._mem[key] = output
                return
            self.conn.execute(
                "INSERT OR REPLACE INTO answer VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, backend, model, prompt_version, source_lang, target_lang, text, output),
            )
            self.conn.commit()

    def __bool__(self) -> bool:  # an empty cache is still a cache (``cache or default`` must not replace it)
        return True

    def __len__(self) -> int:
        with self._lock:
            if self.conn is None:
                return len(self._mem)
            return int(self.conn.execute("SELECT count(*) FROM answer").fetchone()[0])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def discard_if_unused(self) -> None:
        """Close; and when this cache created its file and never stored an answer, remove the file
        (and the folders it created), so a run that failed before any answer leaves nothing behind."""
        if self.path is None or self.path not in self.created:
            self.close()
            return
        try:
            if self.conn is not None:
                unused = len(self) == 0
            elif self.path.exists():
                with contextlib.closing(sqlite3.connect(self.path)) as conn:
                    unused = conn.execute("SELECT count(*) FROM answer").fetchone()[0] == 0
            else:
                unused = True
        except sqlite3.Error:
            unused = False
        self.close()
        if not unused:
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}{suffix}")
        for folder in self.created[:-1]:  # innermost first; only if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
