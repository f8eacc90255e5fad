"""Model cards for what the toolkit saves (``export``, ``finetune --save-model``) and hub uploads.

Built with ``huggingface_hub``'s :class:`~huggingface_hub.ModelCardData`, so the hub (and
``ModelCard.load``) finds the metadata it indexes: ``language``, ``license``, ``base_model``,
``datasets``, ``pipeline_tag``. The body holds only numbers a run wrote (eval.jsonl, probe.json,
benchmark results, results.json), never a figure typed in by hand.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import HfApi, ModelCard, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError

from .errors import KbioxlmError
from .hub import is_hub_id

log = logging.getLogger(__name__)

TAGS = ["kbioxlm", "biomedical", "cross-lingual"]


def _card_data_of(folder: Path) -> dict[str, Any]:
    """The YAML header of ``folder/README.md`` as a dict (empty when there is none or it is unreadable)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    try:
        return ModelCard.load(readme).data.to_dict()
    except Exception as exc:  # noqa: BLE001 - a foreign card we cannot parse only costs metadata
        log.warning("%s: unreadable model card, ignored (%s)", readme, str(exc).splitlines()[0] if str(exc) else exc)
        return {}


def _base_folder(base: str) -> Path | None:
    """The local folder of ``base``: the path itself, or the hub cache's copy of its card (offline)."""
    p = Path(base)
    if p.is_dir():
        return p
    if is_hub_id(base):
        try:
            hit = try_to_load_from_cache(base, "README.md")
        except Exception:  # noqa: BLE001 - no cache, bad id: nothing known
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def base_license(base: str | None) -> str:
    """The licence the base model declares (its card, else a ``license`` key in its config), else ``unknown``.

    A derived model is under its base's licence; guessing one would be worse than saying unknown.
    """
    if not base:
        return "unknown"
    folder = _base_folder(str(base))
    if folder is None:
        return "unknown"
    lic = _card_data_of(folder).get("license")
    if not lic and (folder / "config.json").is_file():
        try:
            lic = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("license")
        except ValueError:
            lic = None
    return str(lic) if isinstance(lic, str) and lic.strip() else "unknown"


def card_base_model(base: str | None) -> str | None:
    """``base_model`` for a card: a hub id as given; for a local folder, the base it declares in
    its own card, else the path as given (the hub accepts only ids: ``export --base-model`` fixes it)."""
    if not base:
        return None
    base = str(base)
    if Path(base).is_dir():
        declared = _card_data_of(Path(base)).get("base_model")
        if isinstance(declared, str) and is_hub_id(declared):
            return declared
    return base


def render(data: Any, body: str) -> str:
    """A README.md: the ``ModelCardData`` YAML header, then the Markdown body."""
    return f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Markdown table lines; floats with two decimals (scores are percentages or accuracies)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"
        return "–" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    message: str | None = None,
) -> str:
    """Create ``repo_id`` (if needed) and upload ``folder`` with ``huggingface_hub``; returns the URL.

    The card's ``base_model`` must be a hub id (the hub refuses other values), so a local path
    there stops the upload before anything is sent.
    """
    folder = Path(folder)
    if not is_hub_id(repo_id):
        raise KbioxlmError(f"{repo_id}: not a hub repository id (expected name or owner/name)")
    base = _card_data_of(folder).get("base_model")
    if isinstance(base, str) and not is_hub_id(base):
        raise KbioxlmError(
            f"{folder}/README.md: base_model {base!r} is a local path, which the hub refuses; "
            "export again with --base-model HUB_ID"
        )
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=message or "Upload with kbioxlm"
        )
    except (HfHubHTTPError, httpx.HTTPError, OSError, ValueError) as exc:  # no network, no token, refused
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KbioxlmError(f"{repo_id}: upload failed ({first}); the local folder {folder} is complete") from exc
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")
