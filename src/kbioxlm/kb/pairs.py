"""Mine bilingual entity pairs from two parallel annotated NER files (``kb mine-pairs``).

The two files share document ids (the ADE EN train set and its Chinese translation with projected
labels). Within a document, the i-th entity of a type on one side is paired with the i-th entity of
that type on the other — but only when both sides have the same number of entities of that type;
otherwise the order cannot be trusted and the group is skipped (and counted). Pairs seen at least
``min_count`` times are kept: stored with their counts in ``pair`` and, so the matcher can use
them, as concepts whose names are the source text (preferred) and every kept translation.

Pairs are keyed case-insensitively (``Methotrexate`` and ``methotrexate`` count together); the
most frequent surface form is stored. A concept id is ``pair:<type>:<hash>`` with the hash taken from
the source language and case-folded source text, so the id of a term does not change when other
pairs are added or ``--min-count`` changes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from typing import Any

from ..errors import KbioxlmError
from ..schema import is_unspaced
from .conll import entities, read_conll_docs
from .importing import importing, record_source
from .languages import check_iso


_SPACE_BEFORE = re.compile(r"\s+([,.;:%)\]])")
_SPACE_AFTER = re.compile(r"([(\[])\s+")
_SPACE_AROUND = re.compile(r"\s*([-/])\s*")


def join_split_punctuation(text: str) -> str:
    """``"Stevens - Johnson syndrome"`` → ``"Stevens-Johnson syndrome"``: the English NER files are
    tokenized around punctuation, running text is not; the variant is added as an extra name."""
    return _SPACE_AROUND.sub(r"\1", _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text)))


def pair_concept_id(etype: str, lang: str, key: str) -> str:
    digest = hashlib.sha1(f"{lang}\t{key}".encode()).hexdigest()[:12]
    return f"pair:{etype}:{digest}"


def _most_common(c: Counter[str]) -> str:
    """Most frequent surface form; ties go to the one with fewer capitals (sentence-initial
    "Methotrexate" vs "methotrexate"), then to text order, so the choice is deterministic."""
    return min(c.items(), key=lambda kv: (-kv[1], sum(ch.isupper() for ch in kv[0]), kv[0]))[0]


def count_pairs(
    source: str | os.PathLike[str], target: str | os.PathLike[str], source_lang: str, target_lang: str
) -> tuple[Counter[tuple[str, str, str]], dict[tuple[str, str], Counter[str]], dict[str, Any]]:
    """``(pair counts keyed (type, key_a, key_b), surface forms per (lang_tag, key), stats)``."""
    src_docs = read_conll_docs(source)
    tgt_docs = read_conll_docs(target)
    common = [d for d in src_docs if d in tgt_docs]
    stats: dict[str, Any] = {
        "docs_common": len(common),
        "docs_only_source": len(src_docs) - len(common),
        "docs_only_target": sum(1 for d in tgt_docs if d not in src_docs),
        "groups_aligned": 0,
        "groups_skipped_count_mismatch": 0,
        "entities_aligned": 0,
    }
    counts: Counter[tuple[str, str, str]] = Counter()
    surfaces: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for doc_id in common:
        a_by_type: dict[str, list[str]] = defaultdict(list)
        b_by_type: dict[str, list[str]] = defaultdict(list)
        for e in entities(src_docs[doc_id]):
            a_by_type[e.type].append(e.text(source_lang))
        for e in entities(tgt_docs[doc_id]):
            b_by_type[e.type].append(e.text(target_lang))
        for etype in sorted(set(a_by_type) | set(b_by_type)):
            a, b = a_by_type.get(etype, []), b_by_type.get(etype, [])
            if len(a) != len(b):
                stats["groups_skipped_count_mismatch"] += 1
                continue
            stats["groups_aligned"] += 1
            stats["entities_aligned"] += len(a)
            for ta, tb in zip(a, b, strict=True):
                ka, kb_ = ta.casefold(), tb.casefold()
                counts[(etype, ka, kb_)] += 1
                surfaces[("a", ka)][ta] += 1
                surfaces[("b", kb_)][tb] += 1
    return counts, surfaces, stats


def mine_pairs(
    kb_path: str | os.PathLike[str],
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    source_lang: str,
    target_lang: str,
    min_count: int = 2,
    source_name: str | None = None,
) -> dict[str, Any]:
    """Count aligned pairs and write those seen ``>= min_count`` times; returns the stats."""
    check_iso(source_lang, "--source-lang")
    check_iso(target_lang, "--target-lang")
    if min_count < 1:
        raise KbioxlmError(f"--min-count must be at least 1, got {min_count}")
    counts, surfaces, stats = count_pairs(source, target, source_lang, target_lang)
    if stats["docs_common"] == 0:
        raise KbioxlmError(f"{source} and {target}: no document id in common (are they parallel files?)")
    src = source_name or f"pairs:{source_lang}-{target_lang}"

    kept = sorted((k, n) for k, n in counts.items() if n >= min_count)
    pair_rows, names, concepts = [], [], {}
    best_target: dict[str, tuple[int, str]] = {}
    for (etype, ka, kb_), n in kept:
        cid = pair_concept_id(etype, source_lang, ka)
        ta, tb = _most_common(surfaces[("a", ka)]), _most_common(surfaces[("b", kb_)])
        concepts[cid] = etype
        pair_rows.append((cid, etype, source_lang, ta, target_lang, tb, n, src))
        names.append((cid, source_lang, ta, 1, src))
        names.append((cid, target_lang, tb, 0, src))
        for lang, text in ((source_lang, ta), (target_lang, tb)):
            if not is_unspaced(lang) and join_split_punctuation(text) != text:
                names.append((cid, lang, join_split_punctuation(text), 0, src))
        best = best_target.get(cid)
        if best is None or (-n, tb) < (-best[0], best[1]):
            best_target[cid] = (n, tb)
    names += [(cid, target_lang, tb, 1, src) for cid, (_, tb) in best_target.items()]

    with importing(kb_path, src) as kb:
        kb.add_concepts((cid, etype, src) for cid, etype in sorted(concepts.items()))
        kb.upsert_names(names)
        kb.add_pairs(pair_rows)
        stats.update(
            {
                "source": src,
                "min_count": min_count,
                "pairs_seen": len(counts),
                "pairs_kept": len(pair_rows),
                "concepts": len(concepts),
                "kept_by_type": dict(sorted(Counter(r[1] for r in pair_rows).items())),
            }
        )
        record_source(
            kb, src, {"importer": "mine-pairs", "source_file": str(source), "target_file": str(target), **stats}
        )
    return stats
