"""One exception type for user-facing failures.

The CLI turns :class:`KbioxlmError` into a one-line message and a non-zero exit, so every stage
raises it (never a bare traceback) when the input, not the code, is at fault.
"""

from __future__ import annotations


class KbioxlmError(Exception):
    """An error caused by the user's input or environment, reported as one line."""


def where(path: object, line: int | None = None) -> str:
    """``file:line`` prefix used by every error that points into a file."""
    return f"{path}:{line}" if line is not None else str(path)
