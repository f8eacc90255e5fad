"""Entity-level code-switching (paper section 3.1.2): matched KB entities are replaced by a name
of the same concept in the other language; every entity keeps its span and concept id.

Records are built as :class:`kbioxlm.schema.EntityRecord` dicts and written with
:func:`kbioxlm.corpus.runner.encode_record` (msgspec). Speed comes from the per-key cache of
:class:`Knowledge` (concept and target name are looked up once per KB name, not per mention)
and from building each entity's dict in one comprehension when nothing moves.
"""

from __future__ import annotations

from typing import Any

from ..schema import EntityRecord, EntitySpan
from .knowledge import Knowledge, KeyInfo
from .runner import encode_record
from .targets import MASK64, pick_weighted, splitmix64


def sample_indices(seed: int, n: int, k: int) -> list[int]:
    """``k`` distinct integers of ``range(n)``, sorted, drawn uniformly with Floyd's algorithm;
    draw ``j`` is ``(x * (j + 1)) >> 64`` for the next SplitMix64 output ``x`` of ``seed``
    (outputs ``1..k``: :func:`kbioxlm.corpus.targets.splitmix64`).

    Why not ``random.Random(seed).sample``: seeding a Mersenne Twister per document costs more
    than the rest of its switching; this needs one 64-bit state and ``k`` multiplications. The
    draws are part of the output's definition (which entities a corpus switches), so this must
    not change.
    """
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} of {n}")
    seed &= MASK64
    taken: set[int] = set()
    for m, j in enumerate(range(n - k, n), 1):
        t = (splitmix64(seed, m) * (j + 1)) >> 64
        taken.add(j if t in taken else t)
    return sorted(taken)


def count_switchable(doc: dict[str, Any], know: Knowledge) -> int:
    """How many switches ``doc`` can take (at most ``max_switches``): the balance pass."""
    infos = know.entity_infos(doc["lang"], know.matchers[doc["lang"]].find_spans(doc["text"]))
    return min(know.options.max_switches, sum(info.target_name is not None for info in infos))


def switch_entities(
    doc_id: Any,
    text: str,
    lang: str,
    other: str,
    spans: list[tuple[int, int, int]],
    infos: list[KeyInfo],
    quota: int,
    seed: int,
) -> tuple[EntityRecord, int]:
    """The Entity record of a ``lang`` text with matches ``spans`` and their ``infos``, and its
    number of switches ``k = min(quota, switchable)`` (0 for a negative ``quota``).

    The ``k`` switched entities are drawn by :func:`sample_indices` ``(seed, switchable, k)``
    among the switchable ones (those with a target name) and replaced by their ``other``-language
    name; every entity, switched or not, is listed with its span in the new text.

    Several target languages (``info.choices``, from ``--target-langs``): the ``i``-th switched
    entity (in text order, from 0) takes the language :func:`~kbioxlm.corpus.targets.pick_weighted`
    chooses with SplitMix64 output ``k + 1 + i`` of ``seed`` (the stream :func:`sample_indices`
    used outputs ``1..k`` of) among the languages its concept has a name in, by their weights
    renormalised over those languages. A single target draws nothing: its output is unchanged.
    """
    switchable = [i for i, info in enumerate(infos) if info.target_name is not None]
    k = max(0, min(quota, len(switchable)))
    chosen = [switchable[j] for j in sample_indices(seed, len(switchable), k)] if k else []
    pieces: list[str] = []
    entities: list[EntitySpan] = []
    pos = 0  # end of the last switched span, in the old text
    shift = 0  # offset in the new text - offset in the old text
    done = 0  # entities before this index are in ``entities``
    for n_sw, i in enumerate([*chosen, len(spans)]):
        # The kept entities up to the next switched one (or the end) all move by ``shift``.
        entities += [
            {"start": s + shift, "end": e + shift, "concept": info.concept, "lang": lang, "switched": False}
            for (s, e, _key), info in zip(spans[done:i], infos[done:i])
        ]
        if i == len(spans):
            break
        s, e, _key = spans[i]
        info = infos[i]
        name: str | None
        if info.choices:  # several target languages: this entity's is drawn (stream outputs k+1, k+2, ...)
            into, name = info.choices[pick_weighted(splitmix64(seed, k + 1 + n_sw), info.cum_weights)]
        else:
            into, name = other, info.target_name
        assert name is not None
        pieces += (text[pos:s], name)
        start = s + shift
        shift += len(name) - (e - s)
        entities.append({"start": start, "end": e + shift, "concept": info.concept, "lang": into, "switched": True})
        pos = e
        done = i + 1
    new_text = "".join([*pieces, text[pos:]]) if k else text
    return {"id": doc_id, "lang": lang, "text": new_text, "task": "entity", "entities": entities}, k


def build_entity_record(
    doc: dict[str, Any],
    know: Knowledge,
    seed: int,
    quota: int,
    spans: list[tuple[int, int, int]] | None = None,
    infos: list[KeyInfo] | None = None,
) -> tuple[EntityRecord | None, int]:
    """The Entity record of ``doc`` (``None`` if nothing matched) and its number of switches.

    Up to ``quota`` switchable entities, drawn from the document's 64-bit ``seed``
    (``runner.doc_seed``), are replaced by the other language's preferred name
    (:func:`switch_entities`). ``spans`` / ``infos``: the matcher's ``find_spans`` of the text and
    their :meth:`Knowledge.entity_infos` when the caller already has them.
    """
    text = doc["text"]
    lang = doc["lang"]
    if spans is None:
        spans = know.matchers[lang].find_spans(text)
    if not spans:
        return None, 0
    if infos is None:
        infos = know.entity_infos(lang, spans)
    return switch_entities(doc["id"], text, lang, know.other(lang), spans, infos, quota, seed)


def build_entity_line(
    doc: dict[str, Any],
    know: Knowledge,
    seed: int,
    quota: int,
    spans: list[tuple[int, int, int]] | None = None,
    infos: list[KeyInfo] | None = None,
) -> tuple[bytes | None, int, int]:
    """:func:`build_entity_record` as a UTF-8 JSON line without newline (``None`` if nothing
    matched), with its number of switches and of entities."""
    rec, k = build_entity_record(doc, know, seed, quota, spans, infos)
    if rec is None:
        return None, 0, 0
    return encode_record(rec), k, len(rec["entities"])
