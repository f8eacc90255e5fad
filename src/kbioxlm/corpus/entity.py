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

Entity = dict[str, Any]
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def count_switchable(doc: dict[str, Any], know: Knowledge) -> int:
    """How many switches ``doc`` can take (at most ``max_switches``): the balance pass."""
    infos = know.entity_infos(doc["lang"], know.matchers[doc["lang"]].find_spans(doc["text"]))
    return min(know.options.max_switches, sum(1 for info in infos if info[0] is not None))


def build_entity_line(
    doc: dict[str, Any], know: Knowledge, rng: random.Random, quota: int, spans: list | None = None
) -> tuple[str | None, int, int]:
    """The Entity record of ``doc`` as a JSONL line (``None`` if nothing matched), its number of
    switches and of entities.

    Up to ``quota`` switchable entities, drawn with ``rng``, are replaced by the other language's
    preferred name; spans of all entities are recomputed for the new text. ``spans``: the
    matcher's ``find_spans`` of the text when the caller already has them.
    """
    text = doc["text"]
    lang = doc["lang"]
    if spans is None:
        spans = know.matchers[lang].find_spans(text)
    if not spans:
        return None, 0, 0
    infos = know.entity_infos(lang, spans)
    switchable = [i for i, info in enumerate(infos) if info[0] is not None]
    k = min(quota, len(switchable))
    if not k:
        ents = [info[1] % (s, e) for (s, e, _k), info in zip(spans, infos)]
        new_text = text
    else:
        chosen = set(rng.sample(switchable, k))
        pieces: list[str] = []
        ents = []
        add_piece = pieces.append
        add_ent = ents.append
        pos = 0  # in the old text
        shift = 0  # new offset - old offset
        for i, ((s, e, _k), info) in enumerate(zip(spans, infos)):
            if i in chosen:
                name = info[0]
                add_piece(text[pos:s])
                add_piece(name)
                ns = s + shift
                shift += len(name) - (e - s)
                add_ent(info[2] % (ns, e + shift))
                pos = e
            else:
                add_ent(info[1] % (s + shift, e + shift))
        pieces.append(text[pos:])
        new_text = "".join(pieces)
    head = _encode({"id": doc["id"], "lang": lang, "text": new_text, "task": "entity"})
    return head[:-1] + ',"entities":[' + ",".join(ents) + "]}", k, len(spans)


def build_entity_record(doc: dict[str, Any], know: Knowledge, rng: random.Random, quota: int) -> tuple[dict | None, int]:
    """The Entity record of ``doc`` as a dict (``None`` if nothing matched) and its number of switches."""
    line, k, _n = build_entity_line(doc, know, rng, quota)
    return (json.loads(line) if line is not None else None), k
