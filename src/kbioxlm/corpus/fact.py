"""Fact-level knowledge (paper section 3.1.3): when two concepts with a KB relation are matched in
the same sentence window, the fact ``head relation tail`` is appended after ``</s>`` in the other
language (or the document's own, ``--fact-lang source``), with spans of the relation and both
arguments.

Records are built as :class:`kbioxlm.schema.FactRecord` dicts and written with
:func:`kbioxlm.corpus.runner.encode_record` (msgspec).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from ..schema import EntitySpan, FactRecord, RelationSpan
from .knowledge import KeyInfo, Knowledge, joiner
from .runner import doc_seed, encode_record
from .sentences import split_sentences
from .targets import cumulative, pick_weighted, splitmix64

FACT_SEP = "</s>"  # between a window and each appended fact (docs/design.md, "Corpus semantics")


def fact_heads(infos: list[KeyInfo]) -> list[int]:
    """Indices of the mentions whose concept has a tail among the concepts of all mentions.

    Why: most documents hold no related pair at all, and a window's facts are a subset of the
    document's, so only windows holding one of these mentions need sentence splitting and search.
    """
    seen = {info.first_concept for info in infos}
    return [i for i, info in enumerate(infos) if info.tails and not seen.isdisjoint(info.tails)]


def window_facts(
    infos: list[KeyInfo],
    names: dict[str, str],
    relations: dict[tuple[str, str], tuple[str, ...]],
    cap: int,
) -> list[tuple[str, str, str]]:
    """Facts ``(head, rel, tail)`` among the mentions ``infos`` of one window: heads in order of
    first mention; per head its tails that occur in the window, both with a name in ``names``, in
    order of first mention; per pair its relations (sorted); stop after the head that reaches
    ``cap``, and keep at most ``cap``."""
    rank: dict[str, int] = {}
    for info in infos:
        rank.setdefault(info.first_concept, len(rank))
    facts: list[tuple[str, str, str]] = []
    done: set[str] = set()
    for info in infos:
        h = info.first_concept
        if h in done:
            continue
        done.add(h)
        if h not in names or rank.keys().isdisjoint(info.tails):
            continue
        hits = sorted((t for t in info.tails if t in rank and t != h and t in names), key=rank.__getitem__)
        for t in hits:
            for rel in relations[(h, t)]:
                facts.append((h, rel, t))
        if len(facts) >= cap:
            break
    return facts[:cap]


def fact_record(
    rec_id: str,
    lang: str,
    body: str,
    window: list[tuple[int, int, int]],
    window_infos: list[KeyInfo],
    ws: int,
    facts: list[tuple[str, str, str]],
    names: dict[str, str],
    labels: dict[str, str],
    join: str,
    fact_lang: str,
) -> FactRecord:
    """One Fact record. Text: ``body`` (the window, starting at document offset ``ws``), then
    ``</s>`` + head name + ``join`` + relation label + ``join`` + tail name per fact. Entities:
    the window's mentions (offsets relative to ``ws``, each naming its smallest concept), then
    head and tail of every fact in ``fact_lang``; relations: one per fact, pointing at them.
    ``names``/``labels``: concept -> name and relation -> label in ``fact_lang``."""
    entities: list[EntitySpan] = [
        {"start": s - ws, "end": e - ws, "concept": info.first_concept, "lang": lang, "switched": False}
        for (s, e, _key), info in zip(window, window_infos)
    ]
    relations: list[RelationSpan] = []
    pieces = [body]
    p = len(body)
    for h, rel, t in facts:
        hn, rn, tn = names[h], labels[rel], names[t]
        hs = p + len(FACT_SEP)
        rs = hs + len(hn) + len(join)
        ts = rs + len(rn) + len(join)
        p = ts + len(tn)
        pieces += (FACT_SEP, hn, join, rn, join, tn)
        entities.append({"start": hs, "end": hs + len(hn), "concept": h, "lang": fact_lang, "switched": False})
        entities.append({"start": ts, "end": p, "concept": t, "lang": fact_lang, "switched": False})
        relations.append(
            {
                "start": rs,
                "end": rs + len(rn),
                "rel": rel,
                "lang": fact_lang,
                "head": len(entities) - 2,
                "tail": len(entities) - 1,
            }
        )
    return {
        "id": rec_id,
        "lang": lang,
        "text": "".join(pieces),
        "task": "fact",
        "entities": entities,
        "relations": relations,
    }


def build_fact_records(
    doc: dict[str, Any],
    know: Knowledge,
    spans: list[tuple[int, int, int]] | None = None,
    infos: list[KeyInfo] | None = None,
) -> list[tuple[FactRecord, int]]:
    """One Fact record per sentence window holding at least one fact, with its number of facts.

    Facts come from ordered pairs (head before tail in order of first mention, then by relation
    id), so the order is deterministic; at most ``max_facts`` per record; id
    ``<doc id>#<window index>``. ``spans`` / ``infos``: the matcher's ``find_spans`` of the text
    and their :meth:`Knowledge.entity_infos` when the caller already has them (combined builds).

    Several target languages (``--target-langs``, facts in the target language, a ``--lang``
    document): each window's facts are in one language, drawn with SplitMix64 output
    ``window index + 1`` of ``doc_seed(seed, "fact", id)`` among the target languages the window
    has facts in (:func:`_draw_fact_language`).
    """
    opts = know.options
    lang = doc["lang"]
    text = doc["text"]
    if spans is None:
        spans = know.matchers[lang].find_spans(text)
    if len(spans) < 2:
        return []
    if infos is None:
        infos = know.entity_infos(lang, spans)
    heads = fact_heads(infos)
    if not heads:
        return []
    sents = split_sentences(text)
    w = max(1, opts.window)
    windows = [(sents[i][0], sents[min(i + w, len(sents)) - 1][1]) for i in range(0, len(sents), w)]
    ends = [we for _ws, we in windows]
    fact_lang = know.other(lang) if opts.fact_lang == "target" else lang
    names = know.names[fact_lang]
    join = joiner(fact_lang)
    labels = know.relation_labels(fact_lang)
    draw = opts.multi and opts.fact_lang == "target" and lang == opts.lang
    seed = doc_seed(opts.seed, "fact", doc["id"]) if draw else 0
    starts = [s for s, _e, _key in spans]
    out: list[tuple[FactRecord, int]] = []
    last = -1
    for i in heads:
        wi = bisect_right(ends, starts[i])  # the window this mention starts in (or the next one)
        if wi == last or wi >= len(windows):
            continue
        last = wi
        ws, we = windows[wi]
        lo = bisect_left(starts, ws)
        hi = bisect_left(starts, we, lo)
        if hi > lo and spans[hi - 1][1] > we:  # matches do not overlap: only the last can run past
            hi -= 1
        if hi - lo < 2:
            continue
        if draw:
            fact_lang, facts = _draw_fact_language(know, infos[lo:hi], splitmix64(seed, wi + 1))
            names = know.names[fact_lang]
            join = joiner(fact_lang)
            labels = know.relation_labels(fact_lang)
        else:
            facts = window_facts(infos[lo:hi], names, know.relations, opts.max_facts)
        if facts:
            rec = fact_record(
                f"{doc['id']}#{wi}",
                lang,
                text[ws:we],
                spans[lo:hi],
                infos[lo:hi],
                ws,
                facts,
                names,
                labels,
                join,
                fact_lang,
            )
            out.append((rec, len(facts)))
    return out


def _draw_fact_language(know: Knowledge, infos: list[KeyInfo], x: int) -> tuple[str, list[tuple[str, str, str]]]:
    """Several target languages: the language of one window's facts, drawn with the 64-bit ``x``
    among the target languages the window has at least one fact in (both names known there), by
    their weights renormalised over those; and its facts (none: ``(first target, [])``)."""
    opts = know.options
    have = [
        (lang, w, facts)
        for lang, w in opts.targets
        if (facts := window_facts(infos, know.names[lang], know.relations, opts.max_facts))
    ]
    if not have:
        return opts.target_lang, []
    lang, _w, facts = have[pick_weighted(x, cumulative([w for _lang, w, _f in have]))]
    return lang, facts


def build_fact_lines(
    doc: dict[str, Any],
    know: Knowledge,
    spans: list[tuple[int, int, int]] | None = None,
    infos: list[KeyInfo] | None = None,
) -> list[tuple[bytes, int]]:
    """:func:`build_fact_records` as ``(UTF-8 JSON line without newline, facts)``."""
    return [(encode_record(rec), n) for rec, n in build_fact_records(doc, know, spans, infos)]
