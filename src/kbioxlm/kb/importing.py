"""Plumbing every importer shares: one transaction per source, streamed reading, bad-line policy.

Why one transaction: an importer first deletes everything of its ``source`` and then writes the new
rows; doing both inside a single SQLite transaction means a killed or failed import leaves the KB
exactly as it was (SQLite rolls an uncommitted transaction back on the next open), and a re-import of
the same source replaces it (idempotence). Why streamed reading: the real UMLS MRCONSO is ~15 GB, so
files are read line by line in binary (the byte count drives the progress bar) and rows are written
with ``executemany`` in batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..errors import KbioxlmError, where
from ..io import SkipCounter, iter_lines
from .store import KnowledgeBase

log = logging.getLogger(__name__)

BATCH_SIZE = 20_000
T = TypeVar("T")


def batched(rows: Iterable[T], size: int = BATCH_SIZE) -> Iterator[list[T]]:
    """Chunks of ``size`` rows, so ``executemany`` never holds a whole file in memory."""
    batch: list[T] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def reject(skip: SkipCounter | None, path: str | os.PathLike[str], lineno: int | None, reason: str) -> None:
    """Abort with ``file:line: reason`` or, under ``--skip-invalid``, count the line and go on."""
    message = f"{where(path, lineno)}: {reason}"
    if skip is None:
        raise KbioxlmError(message)
    skip.add(message)


def require_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    p = Path(path)
    if not p.is_file():
        raise KbioxlmError(f"{p}: {what} not found")
    return p


def iter_stripped_lines(path: str | os.PathLike[str], desc: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a source file without the line ending or a UTF-8 BOM, with a byte
    progress bar labelled ``desc`` (default: the file name): :func:`kbioxlm.io.iter_lines` of a file
    that must exist."""
    p = require_file(path)
    yield from iter_lines(p, progress_desc=desc or p.name, strip=True)


def iter_tsv(
    path: str | os.PathLike[str], n_cols: int | tuple[int, ...], skip: SkipCounter | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Non-blank TAB-separated rows with a column-count check (``n_cols`` may list allowed counts)."""
    allowed = (n_cols,) if isinstance(n_cols, int) else n_cols
    for lineno, line in iter_stripped_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in allowed:
            want = " or ".join(str(n) for n in allowed)
            reject(skip, path, lineno, f"expected {want} TAB-separated columns, got {len(fields)}")
            continue
        yield lineno, fields


# ---- relation names ------------------------------------------------------------------------------
def default_relation_names() -> list[tuple[str, str, str]]:
    """The project's own ``resources/relation_names.tsv`` as ``(rel, lang, text)`` rows."""
    text = resources.files("kbioxlm.resources").joinpath("relation_names.tsv").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            rel, lang, name = line.split("\t")
            rows.append((rel, lang, name))
    return rows


# ---- the transaction -----------------------------------------------------------------------------
@contextlib.contextmanager
def importing(kb_path: str | os.PathLike[str], source: str | None) -> Iterator[KnowledgeBase]:
    """Open (or create) the KB, replace ``source`` inside one transaction, commit only on success.

    ``source=None`` writes without deleting anything (relation-name-only imports). A KB file that
    did not exist before a failed import is removed again, so bad input leaves nothing behind.
    """
    path = Path(kb_path)
    existed = path.exists()
    kb = KnowledgeBase(path, create=True)
    ok = False
    try:
        # A bigger page cache (256 MiB) keeps the name/relation indexes in memory during big imports.
        kb.conn.execute("PRAGMA cache_size = -262144")
        try:
            kb.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # read-only file, locked by another import
            raise KbioxlmError(f"{path}: cannot write ({exc})") from exc
        if source is not None:
            kb.delete_source(source)
        kb.add_default_relation_names(default_relation_names())
        yield kb
        kb.commit()
        ok = True
    finally:
        if not ok and kb.conn.in_transaction:
            kb.conn.rollback()
        kb.close()
        if not ok and not existed:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{path}{suffix}")


def record_source(kb: KnowledgeBase, source: str, info: dict[str, Any]) -> None:
    """Remember what an import read and counted (``meta`` key ``source:<name>``)."""
    kb.set_meta(f"source:{source}", json.dumps(info, ensure_ascii=False, sort_keys=True))


def report_skips(skip: SkipCounter | None) -> None:
    if skip is not None and skip.count:
        log.warning("skipped %d invalid line(s), e.g. %s", skip.count, "; ".join(skip.examples[:3]))
