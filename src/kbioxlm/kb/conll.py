"""A tiny reader for the CoNLL NER files ``kb mine-pairs`` aligns.

Deliberately separate from the task readers (``kbioxlm.tasks``): the KB stage only needs document
ids and entity strings, and must not depend on another stage's package. Format::

    -DOCSTART-<TAB><doc id>
    <blank>
    token<TAB>BIO-tag
    ...
    <blank>
    -DOCSTART-<TAB><next doc id>
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import KbioxlmError, where
from ..schema import is_unspaced
from .importing import iter_lines


@dataclass(frozen=True)
class Entity:
    type: str
    tokens: tuple[str, ...]

    def text(self, lang: str) -> str:
        """Surface form: characters joined without spaces for unspaced scripts (zh, ja), else with spaces."""
        return ("" if is_unspaced(lang) else " ").join(self.tokens)


def read_conll_docs(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, str]]]:
    """Document id → its ``(token, tag)`` list, in file order; duplicate ids and bad lines are errors."""
    docs: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        cells = line.split("\t")
        if cells[0] == "-DOCSTART-":
            doc_id = cells[1].strip() if len(cells) > 1 else ""
            if not doc_id:
                raise KbioxlmError(f"{where(path, lineno)}: -DOCSTART- line without a document id")
            if doc_id in docs:
                raise KbioxlmError(f"{where(path, lineno)}: duplicate document id {doc_id!r}")
            current = docs[doc_id] = []
            continue
        if len(cells) != 2:
            raise KbioxlmError(f"{where(path, lineno)}: expected token<TAB>tag, got {len(cells)} column(s)")
        token, tag = cells[0], cells[1].strip()
        if tag != "O" and not (tag[:2] in {"B-", "I-"} and len(tag) > 2):
            raise KbioxlmError(f"{where(path, lineno)}: bad tag {tag!r} (expected O, B-<type> or I-<type>)")
        if current is None:
            raise KbioxlmError(f"{where(path, lineno)}: token before the first -DOCSTART- line")
        current.append((token, tag))
    return docs


def entities(tagged: list[tuple[str, str]]) -> list[Entity]:
    """Entities in order. An ``I-X`` that does not continue an ``X`` span starts a new one (the
    released ADE data has ``I-ADE`` right after ``B-Drug``, a flattened overlap)."""
    out: list[Entity] = []
    cur_type: str | None = None
    cur: list[str] = []
    for token, tag in tagged:
        kind, _, etype = tag.partition("-")
        if kind == "I" and etype == cur_type:
            cur.append(token)
            continue
        if cur_type is not None:
            out.append(Entity(cur_type, tuple(cur)))
        cur_type, cur = (etype, [token]) if kind in {"B", "I"} else (None, [])
    if cur_type is not None:
        out.append(Entity(cur_type, tuple(cur)))
    return out
