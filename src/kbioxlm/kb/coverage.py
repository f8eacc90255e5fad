"""How well a tokenizer covers each language of a KB (``kbioxlm kb stats --tokenizer T``).

A model cannot anchor a language whose names come out as ``<unk>``: a trimmed vocabulary (such as
the shipped EN+ZH ``multilingual-e5-small-zhen``) loses every piece of a script it dropped. The
check: every distinct name of each language, tokenized without special tokens, and the share of
pieces that are the unknown token.
"""

from __future__ import annotations

from typing import Any

from ..hub import load_tokenizer
from ..progress import quiet_transformers
from .store import KnowledgeBase


def tokenizer_coverage(kb: KnowledgeBase, tokenizer: str, batch_size: int = 4096) -> dict[str, Any]:
    """``{"tokenizer": T, "unk_token": "<unk>" | None, "languages": {lang: {"names", "pieces",
    "unk_pieces", "unk_rate", "names_with_unk"}}}`` over the distinct names of each language;
    ``unk_rate`` is ``unk_pieces / pieces`` (0 for a tokenizer without an unknown token)."""
    with quiet_transformers():
        tok = load_tokenizer(tokenizer)
    unk = tok.unk_token_id
    out: dict[str, Any] = {
        "tokenizer": tokenizer,
        "unk_token": tok.unk_token if unk is not None else None,
        "languages": {},
    }
    for lang in kb.languages():
        texts = sorted({text for text, _cid, _pref in kb.iter_names(lang)})
        pieces = unk_pieces = with_unk = 0
        for i in range(0, len(texts), batch_size):
            for ids in tok(texts[i : i + batch_size], add_special_tokens=False)["input_ids"]:
                pieces += len(ids)
                n = ids.count(unk) if unk is not None else 0
                unk_pieces += n
                with_unk += n > 0
        out["languages"][lang] = {
            "names": len(texts),
            "pieces": pieces,
            "unk_pieces": unk_pieces,
            "unk_rate": round(unk_pieces / pieces, 6) if pieces else 0.0,
            "names_with_unk": with_unk,
        }
    return out
