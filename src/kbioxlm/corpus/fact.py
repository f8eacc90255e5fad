"""Fact-level knowledge (paper section 3.1.3): when two concepts with a KB relation are matched in
the same sentence window, the fact ``head relation tail`` is appended after ``</s>`` in the other
language (or the document's own, ``--fact-lang source``), with spans of the relation and both
arguments."""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from operator import itemgetter
from typing import Any

from ..speedups import fact_heads, fact_line, window_facts
from .knowledge import EntityInfo, Knowledge, joiner
from .runner import js, json_literals, record_prefix
from .sentences import split_sentences

_start = itemgetter(0)


def build_fact_records(doc: dict[str, Any], know: Knowledge, spans: list | None = None) -> list[dict[str, Any]]:
    """One Fact record (a dict) per sentence window holding at least one fact (see :func:`build_fact_lines`)."""
    return [json.loads(line) for line, _n in build_fact_lines(doc, know, spans)]


def build_fact_lines(
    doc: dict[str, Any], know: Knowledge, spans: list | None = None, infos: list[EntityInfo] | None = None
) -> list[tuple[bytes, int]]:
    """One Fact record per sentence window holding at least one fact, as ``(UTF-8 JSON line
    without newline, facts)``.

    Facts come from ordered pairs (head before tail in order of first mention, then by relation
    id), so the order is deterministic; at most ``max_facts`` per record. ``spans`` / ``infos``:
    the matcher's ``find_spans`` of the text and their :meth:`Knowledge.entity_infos` when the
    caller already has them (combined builds). The line is written directly (byte-identical to
    ``io.dumps`` of the record): a record lists every match of its window, tens of span objects.
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
    # Most documents hold no related pair at all: check that on the whole document before any
    # per-sentence work (a window's facts are a subset of the document's). Only windows holding a
    # mention whose concept has a tail in the document ("heads") can hold a fact.
    heads = fact_heads(infos)
    if not heads:
        return []
    sents = split_sentences(text)
    w = max(1, opts.window)
    windows = [(sents[i][0], sents[min(i + w, len(sents)) - 1][1]) for i in range(0, len(sents), w)]
    ends = [we for _ws, we in windows]
    n_windows = len(windows)
    fact_lang = know.other(lang) if opts.fact_lang == "target" else lang
    names = know.names[fact_lang]
    tails_of = know.tails
    join = joiner(fact_lang)
    relations_of = know.relations
    cap = opts.max_facts
    fact_lang_js = js(fact_lang)
    labels = know.relation_labels(fact_lang)
    starts = list(map(_start, spans))
    out: list[tuple[bytes, int]] = []
    last = -1
    for i in heads:
        wi = bisect_right(ends, starts[i])  # the window this mention starts in (or the next one)
        if wi == last or wi >= n_windows:
            continue
        last = wi
        ws, we = windows[wi]
        lo = bisect_left(starts, ws)
        hi = bisect_left(starts, we, lo)
        if hi > lo and spans[hi - 1][1] > we:  # matches do not overlap: only the last can run past
            hi -= 1
        if hi - lo < 2:
            continue
        facts = window_facts(infos, lo, hi, names, tails_of, relations_of, cap)
        if not facts:
            continue
        line = fact_line(record_prefix(f"{doc['id']}#{wi}", lang), text[ws:we], spans, infos, lo, hi, ws, facts,
                         names, labels, join, fact_lang_js, json_literals)
        out.append((line, len(facts)))
    return out
