"""Entity-level code-switching (paper section 3.1.2): matched KB entities are replaced by a name
of the same concept in the other language; every entity keeps its span and concept id.

Speed: with a match every few characters the per-entity work dominates the build, so the record
is written straight to its JSONL line (no per-entity dicts; concept/target name come from the
per-key cache of :class:`Knowledge`). The line is byte-identical to ``io.dumps`` of the record
(checked by the tests through :func:`build_entity_record`).
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any

from ..speedups import switch_entities
from .knowledge import EntityInfo, Knowledge
from .runner import record_prefix

Entity = dict[str, Any]
_target = itemgetter(0)


def count_switchable(doc: dict[str, Any], know: Knowledge) -> int:
    """How many switches ``doc`` can take (at most ``max_switches``): the balance pass."""
    infos = know.entity_infos(doc["lang"], know.matchers[doc["lang"]].find_spans(doc["text"]))
    return min(know.options.max_switches, len(infos) - list(map(_target, infos)).count(None))


def build_entity_line(
    doc: dict[str, Any],
    know: Knowledge,
    seed: int,
    quota: int,
    spans: list | None = None,
    infos: list[EntityInfo] | None = None,
) -> tuple[bytes | None, int, int]:
    """The Entity record of ``doc`` as a UTF-8 JSON line without newline (``None`` if nothing
    matched), its number of switches and of entities.

    Up to ``quota`` switchable entities, drawn with :func:`kbioxlm.speedups.sample_indices` from
    the document's 64-bit ``seed`` (``runner.doc_seed``), are replaced by the other language's
    preferred name; spans of all entities are recomputed for the new text (all of it in
    :func:`kbioxlm.speedups.switch_entities`). ``spans`` / ``infos``:
    the matcher's ``find_spans`` of the text and their :meth:`Knowledge.entity_infos` when the
    caller already has them.
    """
    text = doc["text"]
    lang = doc["lang"]
    if spans is None:
        spans = know.matchers[lang].find_spans(text)
    if not spans:
        return None, 0, 0
    if infos is None:
        infos = know.entity_infos(lang, spans)
    line, k = switch_entities(text, spans, infos, quota, seed, record_prefix(doc["id"], lang))
    return line, k, len(spans)


def build_entity_record(doc: dict[str, Any], know: Knowledge, seed: int, quota: int) -> tuple[dict | None, int]:
    """The Entity record of ``doc`` as a dict (``None`` if nothing matched) and its number of switches."""
    line, k, _n = build_entity_line(doc, know, seed, quota)
    return (json.loads(line) if line is not None else None), k
