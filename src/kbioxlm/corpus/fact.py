"""Fact-level knowledge (paper section 3.1.3): when two concepts with a KB relation are matched in
the same sentence window, the fact ``head relation tail`` is appended after ``</s>`` in the other
language (or the document's own, ``--fact-lang source``), with spans of the relation and both
arguments."""

from __future__ import annotations

import json
from bisect import bisect_left
from itertools import repeat
from typing import Any

from .knowledge import Knowledge, joiner
from .runner import js
from .sentences import split_sentences

SEP = "</s>"
_SPAN = '{"start":%d,"end":%d,"concept":%s'
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def build_fact_records(doc: dict[str, Any], know: Knowledge, spans: list | None = None) -> list[dict[str, Any]]:
    """One Fact record (a dict) per sentence window holding at least one fact (see :func:`build_fact_lines`)."""
    return [json.loads(line) for line, _n in build_fact_lines(doc, know, spans)]


def build_fact_lines(doc: dict[str, Any], know: Knowledge, spans: list | None = None) -> list[tuple[str, int]]:
    """One Fact record per sentence window holding at least one fact, as ``(JSONL line, facts)``.

    Facts come from ordered pairs (head before tail in order of first mention, then by relation
    id), so the order is deterministic; at most ``max_facts`` per record. ``spans``: the
    matcher's ``find_spans`` of the text when the caller already has them (combined builds).
    The line is written directly (byte-identical to ``io.dumps`` of the record): a record lists
    every match of its window, tens of span objects.
    """
    opts = know.options
    lang = doc["lang"]
    text = doc["text"]
    if spans is None:
        spans = know.matchers[lang].find_spans(text)
    if len(spans) < 2:
        return []
    concepts = know.first_concepts(lang, spans)
    # Most documents hold no related pair at all: check that on the whole document before the
    # sentence split and the per-window work (a window's facts are a subset of the document's).
    # All in C (map/isdisjoint): this runs for every document. Tails never include their head.
    tails_of = know.tails
    seen = set(concepts)
    if all(map(seen.isdisjoint, map(tails_of.get, seen, repeat(())))):
        return []
    spans = [(s, e, c) for (s, e, _k), c in zip(spans, concepts)]
    fact_lang = know.other(lang) if opts.fact_lang == "target" else lang
    names = know.names[fact_lang]
    sents = split_sentences(text)
    w = max(1, opts.window)
    windows = [(sents[i][0], sents[min(i + w, len(sents)) - 1][1]) for i in range(0, len(sents), w)]
    join = joiner(fact_lang)
    relations_of = know.relations
    cap = opts.max_facts
    keep_tail = ',"lang":%s,"switched":false}' % js(lang)
    fact_tail = ',"lang":%s,"switched":false}' % js(fact_lang)
    rel_tail = ',"lang":%s,"head":%d,"tail":%d}'
    fact_lang_js = js(fact_lang)
    starts = [sp[0] for sp in spans]
    n = len(spans)
    out: list[tuple[str, int]] = []
    mi = 0
    for wi, (ws, we) in enumerate(windows):
        j = bisect_left(starts, we, mi, n)  # matches starting before the window's end
        if j - mi < 2:
            mi = j
            continue
        ents = [sp for sp in spans[mi:j] if sp[0] >= ws and sp[1] <= we]
        mi = j
        if len(ents) < 2:
            continue
        pos = dict.fromkeys([sp[2] for sp in ents])  # concepts in order of first mention
        rank: dict[str, int] | None = None
        facts: list[tuple[str, str, str]] = []
        for h in pos:
            outs = tails_of.get(h)
            if not outs or h not in names:
                continue
            # Tails are few per head: look them up in the window rather than pairing every mention.
            hits = [t for t in outs if t in pos and t != h and t in names]
            if not hits:
                continue
            if len(hits) > 1:
                if rank is None:
                    rank = {c: i for i, c in enumerate(pos)}
                hits.sort(key=rank.__getitem__)
            for t in hits:
                for rel in relations_of[(h, t)]:
                    facts.append((h, rel, t))
            if len(facts) >= cap:
                break
        if not facts:
            continue
        facts = facts[:cap]
        body = text[ws:we]
        entities = [_SPAN % (s - ws, e - ws, js(c)) + keep_tail for s, e, c in ents]
        relations = []
        pieces = [body]
        p = len(body)
        for h, rel, t in facts:
            hn, rn, tn = names[h], know.relation_name(rel, fact_lang), names[t]
            hs = p + len(SEP)
            rs = hs + len(hn) + len(join)
            ts = rs + len(rn) + len(join)
            p = ts + len(tn)
            pieces.extend((SEP, hn, join, rn, join, tn))
            entities.append(_SPAN % (hs, hs + len(hn), js(h)) + fact_tail)
            entities.append(_SPAN % (ts, p, js(t)) + fact_tail)
            k = len(entities)
            relations.append('{"start":%d,"end":%d,"rel":%s' % (rs, rs + len(rn), js(rel)) + rel_tail % (fact_lang_js, k - 2, k - 1))
        head = _encode({"id": f"{doc['id']}#{wi}", "lang": lang, "text": "".join(pieces), "task": "fact"})
        out.append((head[:-1] + ',"entities":[' + ",".join(entities) + '],"relations":[' + ",".join(relations) + "]}", len(facts)))
    return out
