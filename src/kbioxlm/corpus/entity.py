"""Entity-level code-switching (paper section 3.1.2): matched KB entities are replaced by a name
of the same concept in the other language; every entity keeps its span and concept id."""

from __future__ import annotations

import random
from typing import Any

from .knowledge import Knowledge

Entity = dict[str, Any]


def entity_candidates(doc: dict[str, Any], know: Knowledge) -> tuple[list[tuple[int, int, str, bool]], str]:
    """Matches of ``doc`` as ``(start, end, concept, switchable)`` and the other language.

    The concept is the first (smallest) of the matched name's concepts that has a name in the other
    language, else the smallest; ``switchable`` says whether such a name exists.
    """
    lang = doc["lang"]
    other = know.other(lang)
    targets = know.names[other]
    matcher = know.matchers[lang]
    text = doc["text"]
    out = []
    for s, e, cids in matcher.find_concepts(text):
        if len(cids) == 1:
            c = cids[0]
            out.append((s, e, c, c in targets))
            continue
        chosen = next((c for c in cids if c in targets), None)
        out.append((s, e, chosen or cids[0], chosen is not None))
    return out, other


def count_switchable(doc: dict[str, Any], know: Knowledge) -> int:
    """How many switches ``doc`` can take (at most ``max_switches``): the balance pass."""
    cands, _ = entity_candidates(doc, know)
    return min(know.options.max_switches, sum(1 for c in cands if c[3]))


def build_entity_record(doc: dict[str, Any], know: Knowledge, rng: random.Random, quota: int) -> tuple[dict | None, int]:
    """The Entity record of ``doc`` (``None`` if nothing matched) and its number of switches.

    Up to ``quota`` switchable entities, drawn with ``rng``, are replaced by the other language's
    preferred name; spans of all entities are recomputed for the new text.
    """
    cands, other = entity_candidates(doc, know)
    if not cands:
        return None, 0
    switchable = [i for i, c in enumerate(cands) if c[3]]
    k = min(quota, len(switchable))
    chosen = set(rng.sample(switchable, k)) if k else set()
    text = doc["text"]
    lang = doc["lang"]
    targets = know.names[other]
    pieces: list[str] = []
    entities: list[Entity] = []
    pos = 0  # in the old text
    new_len = 0
    for i, (s, e, cid, _sw) in enumerate(cands):
        gap = text[pos:s]
        pieces.append(gap)
        new_len += len(gap)
        if i in chosen:
            name = targets[cid]
            pieces.append(name)
            entities.append({"start": new_len, "end": new_len + len(name), "concept": cid, "lang": other, "switched": True})
            new_len += len(name)
        else:
            pieces.append(text[s:e])
            entities.append({"start": new_len, "end": new_len + e - s, "concept": cid, "lang": lang, "switched": False})
            new_len += e - s
        pos = e
    pieces.append(text[pos:])
    rec = {"id": doc["id"], "lang": lang, "text": "".join(pieces), "task": "entity", "entities": entities}
    return rec, k
