"""Held-out concepts: ``kbioxlm kb split`` chooses them, the KB-derived corpus builders leave them out.

The split is deterministic and independent of the KB's row order: the candidates (concepts with a
name in every language of ``--langs``) are ranked by ``sha256(f"{seed}:{concept_id}")`` and the
first ``round(fraction * candidates)`` (at most ``--max-concepts``) are held out. The file lists
one concept id per line, sorted.

The same file is read back by ``--exclude-concepts`` (:func:`read_concept_list`): one id per line,
blank lines and ``#`` comments ignored. What "held out" means for the builders (no entity, no
switched-in name, no fact, no alignment record) is implemented in
:meth:`kbioxlm.corpus.knowledge.Knowledge.load` and :mod:`kbioxlm.corpus.align` with the names
of :func:`held_out_names`.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from ..io import atomic_write, iter_lines
from .matcher import fold_case
from .store import KnowledgeBase


def _rank(seed: int, concept_id: str) -> str:
    return hashlib.sha256(f"{seed}:{concept_id}".encode()).hexdigest()


def split_concepts(
    kb_path: str | Path,
    fraction: float,
    seed: int,
    langs: list[str] | tuple[str, ...],
    out: str | Path,
    max_concepts: int | None = None,
) -> dict[str, Any]:
    """Write the held-out concept ids of ``kb_path`` to ``out`` (atomically); returns the counts."""
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 < fraction <= 1):
        raise KbioxlmError(f"--holdout-fraction must be in (0, 1], got {fraction!r}")
    if max_concepts is not None and max_concepts < 0:
        raise KbioxlmError(f"--max-concepts must not be negative, got {max_concepts}")
    langs = [x.strip() for x in langs if x.strip()]
    if not langs:
        raise KbioxlmError("--langs names no language")
    if len(set(langs)) != len(langs):
        raise KbioxlmError(f"--langs repeats a language: {','.join(langs)}")
    if not Path(kb_path).exists():
        raise KbioxlmError(f"{kb_path}: knowledge base not found (build it with `kbioxlm kb import ...`)")
    with KnowledgeBase(kb_path) as kb:
        candidates: set[str] | None = None
        for lang in langs:
            kb.require_language(lang)  # names the missing language
            have = set(kb.preferred_names(lang))
            candidates = have if candidates is None else candidates & have
    assert candidates is not None
    n = math.floor(fraction * len(candidates) + 0.5)
    if max_concepts is not None:
        n = min(n, max_concepts)
    chosen = sorted(sorted(candidates, key=lambda c: (_rank(seed, c), c))[:n])
    try:
        with atomic_write(out) as fh:
            for cid in chosen:
                fh.write(cid + "\n")
    except OSError as exc:
        raise KbioxlmError(f"{out}: cannot write ({exc.strerror or exc})") from exc
    return {"candidates": len(candidates), "held_out": len(chosen), "langs": ",".join(langs), "seed": seed}


def concept_list_lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """``(line, concept id)`` of a one-id-per-line file, in file order: blank lines and ``#``
    comments (a whole line, or after the id) are ignored. The one reader of concept lists: the
    corpus builders' ``--exclude-concepts`` and the probe's ``--concepts``."""
    if not Path(path).exists():
        raise KbioxlmError(f"{path}: cannot read (no such file)")
    out: list[tuple[int, str]] = []
    for lineno, line in iter_lines(path, strip=True):
        cid = line.split("#", 1)[0].strip()
        if cid:
            out.append((lineno, cid))
    return out


def read_concept_list(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Concept ids of a ``--exclude-concepts`` file, sorted and unique (:func:`concept_list_lines`)."""
    return tuple(sorted({cid for _lineno, cid in concept_list_lines(path)}))


def held_out_names(kb: KnowledgeBase, concept_ids: tuple[str, ...] | list[str]) -> tuple[frozenset[str], int]:
    """The case-folded names, in every language, of the held-out concepts, and how many of the ids
    have no name in the KB (unknown ids: counted, not an error)."""
    by_concept = kb.names_of(concept_ids)
    names = frozenset(fold_case(text) for rows in by_concept.values() for _lang, text in rows)
    return names, len(set(concept_ids)) - len(by_concept)


def warn_unknown(unknown: int, total: int, path: str | Path | None = None) -> None:
    """One warning line on stderr when some excluded ids are not in the KB."""
    if unknown:
        where = f" ({path})" if path else ""
        print(
            f"warning: {unknown} of {total} excluded concept ids{where} have no names in the knowledge base",
            file=sys.stderr,
        )
