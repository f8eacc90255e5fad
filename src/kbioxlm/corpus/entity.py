"""Entity-level code-switching (paper section 3.1.2): matched KB entities are replaced by a name
of the same concept in the other language; every entity keeps its span and concept id.

Speed: with a match every few characters the per-entity work dominates the build, so the record
is written straight to its JSONL line (no per-entity dicts; concept/target name come from the
per-key cache of :class:`Knowledge`). The line is byte-identical to ``io.dumps`` of the record
(checked by the tests through :func:`build_entity_record`).
"""

from __future__ import annotations

import json
import random
from typing import Any

from .knowledge import Knowledge
from .runner import js

Entity = dict[str, Any]
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SPAN = '{"start":%d,"end":%d,"concept":%s'


def entity_candidates(doc: dict[str, Any], know: Knowledge, spans: list | None = None) -> tuple[list[tuple[int, int, str, str | None, str]], str]:
    """Matches of ``doc`` as ``(start, end, concept, target name or None, concept as JSON)`` and the
    other language.

    The concept is the first (smallest) of the matched name's concepts that has a name in the other
    language, else the smallest; the target name (``None``: not switchable) is that name.
    ``spans``: the matcher's ``find_spans`` of the text when the caller already has them.
    """
    lang = doc["lang"]
    text = doc["text"]
    if spans is None:
        spans = know.matchers[lang].find_spans(text)
    return know.entity_concepts(lang, text, spans), know.other(lang)


def count_switchable(doc: dict[str, Any], know: Knowledge) -> int:
    """How many switches ``doc`` can take (at most ``max_switches``): the balance pass."""
    cands, _ = entity_candidates(doc, know)
    n = 0
    for c in cands:
        if c[3] is not None:
            n += 1
    return min(know.options.max_switches, n)


def build_entity_line(
    doc: dict[str, Any], know: Knowledge, rng: random.Random, quota: int, spans: list | None = None
) -> tuple[str | None, int, int]:
    """The Entity record of ``doc`` as a JSONL line (``None`` if nothing matched), its number of
    switches and of entities.

    Up to ``quota`` switchable entities, drawn with ``rng``, are replaced by the other language's
    preferred name; spans of all entities are recomputed for the new text.
    """
    cands, other = entity_candidates(doc, know, spans)
    if not cands:
        return None, 0, 0
    switchable = [i for i, c in enumerate(cands) if c[3] is not None]
    k = min(quota, len(switchable))
    chosen = set(rng.sample(switchable, k)) if k else ()
    text = doc["text"]
    lang = doc["lang"]
    keep_tail = ',"lang":%s,"switched":false}' % js(lang)
    switch_tail = ',"lang":%s,"switched":true}' % js(other)
    pieces: list[str] = []
    ents: list[str] = []
    add_piece = pieces.append
    add_ent = ents.append
    pos = 0  # in the old text
    shift = 0  # new offset - old offset
    for i, (s, e, _cid, name, cid_js) in enumerate(cands):
        if i in chosen:
            add_piece(text[pos:s])
            add_piece(name)
            ns = s + shift
            shift += len(name) - (e - s)
            add_ent(_SPAN % (ns, e + shift, cid_js) + switch_tail)
            pos = e
        elif shift:
            add_ent(_SPAN % (s + shift, e + shift, cid_js) + keep_tail)
        else:
            add_ent(_SPAN % (s, e, cid_js) + keep_tail)
    if pieces:
        pieces.append(text[pos:])
        new_text = "".join(pieces)
    else:
        new_text = text
    head = _encode({"id": doc["id"], "lang": lang, "text": new_text, "task": "entity"})
    return head[:-1] + ',"entities":[' + ",".join(ents) + "]}", k, len(cands)


def build_entity_record(doc: dict[str, Any], know: Knowledge, rng: random.Random, quota: int) -> tuple[dict | None, int]:
    """The Entity record of ``doc`` as a dict (``None`` if nothing matched) and its number of switches."""
    line, k, _n = build_entity_line(doc, know, rng, quota)
    return (json.loads(line) if line is not None else None), k
