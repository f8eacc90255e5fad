"""Model and tokenizer names: a local folder, or a Hugging Face hub id; one clear line when neither.

``transformers`` answers a mistyped local path with "Repo id must be in the form 'repo_name' or
'namespace/repo_name'", which hides the real problem (the folder does not exist). Every command
that takes ``--model``/``--tokenizer`` checks the name first with :func:`check_model_name` and turns
a failed load into one line with :func:`load_error`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from .errors import KbioxlmError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def is_hub_id(name: str) -> bool:
    """True when ``name`` could name a hub repository (``name`` or ``owner/name``)."""
    return (
        bool(_HUB_ID.match(name))
        and ".." not in name
        and "--" not in name
        and len(name) <= 96
        and not name.endswith(".")
    )


def check_model_name(name: str | None, what: str = "model") -> None:
    """Refuse, before any download is tried, a name that is neither an existing path nor a hub id."""
    if not name:
        return
    if Path(name).exists():
        return
    if not is_hub_id(str(name)):
        raise KbioxlmError(
            f"{name}: no such {what} folder (the path does not exist, and it is not a Hugging Face hub id)"
        )


def load_error(name: str, exc: BaseException, what: str = "model") -> KbioxlmError:
    """One line for a failed ``from_pretrained(name)``: a broken local folder, or an unreachable hub id."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    if Path(name).exists():
        return KbioxlmError(f"{name}: cannot load the {what} ({reason})")
    return KbioxlmError(
        f"{name}: cannot load the {what}: the path does not exist and it is not a reachable Hugging Face hub id ({reason})"
    )


@functools.lru_cache(maxsize=2)
def load_tokenizer(name: str) -> Any:
    """Fast tokenizer by name/path, cached: loading XLM-R's 250k-piece tokenizer takes seconds and
    repeated in-process runs (tests, benchmark matrices, time-sliced resumes) reuse it read-only."""
    from transformers import AutoTokenizer  # lazy: transformers; hub is loaded by `kbioxlm --help`

    check_model_name(name, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise load_error(name, exc, "tokenizer") from exc
    if not getattr(tok, "is_fast", False):
        raise KbioxlmError(f"{name}: needs a fast tokenizer (tokenizer.json) for offset mapping")
    return tok
