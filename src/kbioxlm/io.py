"""JSONL reading with file:line errors, and atomic writes.

Every builder writes through :func:`atomic_write` so a killed job never leaves a half-written
output under the final name; readers report the exact file and line of a bad record.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import KbioxlmError, where


@dataclass
class SkipCounter:
    """Counts records skipped under ``--skip-invalid``, with the first few reasons for the summary."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(message)


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a UTF-8 text file, turning OS errors into a one-line :class:`KbioxlmError`."""
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file; a decoding error names the file and line."""
    with open_text(path) as fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except UnicodeDecodeError as exc:
                raise KbioxlmError(f"{where(path, lineno + 1)}: not valid UTF-8 ({exc.reason})") from exc
            if not line:
                return
            lineno += 1
            yield lineno, line


def iter_jsonl(
    path: str | os.PathLike[str],
    validate: Callable[[dict[str, Any]], None] | None = None,
    skip: SkipCounter | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line.

    ``validate`` raises ``ValueError`` with a reason; the reason is reported as ``file:line: reason``.
    With ``skip`` given, bad lines are counted and skipped instead of aborting.
    """
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
            if validate is not None:
                validate(rec)
        except (ValueError, TypeError) as exc:
            reason = f"{where(path, lineno)}: {_reason(exc)}"
            if skip is None:
                raise KbioxlmError(reason) from exc
            skip.add(reason)
            continue
        yield lineno, rec


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON ({exc.msg} at column {exc.colno})"
    return str(exc)


def dumps(record: dict[str, Any]) -> str:
    """Canonical JSONL line: stable key order as given, UTF-8 kept, no spaces (byte-reproducible)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike[str], records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    """Atomically write records as JSONL; returns the count."""
    n = 0
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(dumps(rec) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write a pretty JSON document (results, summaries)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=False)
        fh.write("\n")
