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
from ..io import SkipCounter
from ..progress import progress
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


def iter_lines(path: str | os.PathLike[str], desc: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` without the line ending or a UTF-8 BOM, with a byte progress bar.

    Read in binary so the progress bar can count bytes (text-mode ``tell()`` is unusable while
    iterating), decoding each line on its own so a bad byte is reported with its line number.
    """
    p = require_file(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise KbioxlmError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    with fh, progress(total=p.stat().st_size, unit="B", unit_scale=True, desc=desc or p.name, leave=False) as bar:
        pending = 0
        for lineno, raw in enumerate(fh, 1):
            pending += len(raw)
            if pending >= 1 << 22:
                bar.update(pending)
                pending = 0
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise KbioxlmError(f"{where(p, lineno)}: not valid UTF-8 ({exc.reason})") from exc
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield lineno, line.rstrip("\r\n")
        bar.update(pending)


def iter_tsv(
    path: str | os.PathLike[str], n_cols: int | tuple[int, ...], skip: SkipCounter | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Non-blank TAB-separated rows with a column-count check (``n_cols`` may list allowed counts)."""
    allowed = (n_cols,) if isinstance(n_cols, int) else n_cols
    for lineno, line in iter_lines(path):
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
