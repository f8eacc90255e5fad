"""CoNLL NER files as ``kb mine-pairs`` aligns them: whole documents by id, and their entities.

The line format is :mod:`kbioxlm.conll` (shared with the task readers); this module groups lines
into documents, which must all have an id (``-DOCSTART-<TAB><id>``), each id once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..conll import bio_spans, iter_conll
from ..errors import KbioxlmError, where
from ..schema import is_unspaced
from .importing import iter_stripped_lines


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
    for row in iter_conll(path, iter_stripped_lines(path)):
        if row.kind == "blank":
            continue
        if row.kind == "doc":
            if not row.text:
                raise KbioxlmError(f"{where(path, row.lineno)}: -DOCSTART- line without a document id")
            if row.text in docs:
                raise KbioxlmError(f"{where(path, row.lineno)}: duplicate document id {row.text!r}")
            current = docs[row.text] = []
            continue
        if current is None:
            raise KbioxlmError(f"{where(path, row.lineno)}: token before the first -DOCSTART- line")
        current.append((row.text, row.tag))
    return docs


def entities(tagged: list[tuple[str, str]]) -> list[Entity]:
    """Entities in order, read as :func:`kbioxlm.conll.bio_spans` reads BIO tags."""
    tokens = [token for token, _ in tagged]
    return [Entity(etype, tuple(tokens[s:e])) for s, e, etype in bio_spans([tag for _, tag in tagged])]
