"""Shared fixtures: where the real data lives, and a skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KBIOXLM_SHARED", ROOT.parent / "shared"))
SHARED_REASON = f"needs the shared data folder at {SHARED} (set KBIOXLM_SHARED); absent in a fresh clone"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, skipping the calling test when it does not exist."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{SHARED_REASON}: missing {p}")
    return p


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip(SHARED_REASON)
    return SHARED


@pytest.fixture(scope="session")
def xlmr_tokenizer_path() -> Path:
    return shared_path("tokenizers", "xlm-roberta-base")


@pytest.fixture(scope="session")
def small_model_path() -> Path:
    return shared_path("models", "multilingual-e5-small-zhen")
