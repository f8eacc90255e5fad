"""Fact-level knowledge (paper section 3.1.3): when two concepts with a KB relation are matched in
the same sentence window, the fact ``head relation tail`` is appended after ``</s>`` in the other
language (or the document's own, ``--fact-lang source``), with spans of the relation and both
arguments."""

from __future__ import annotations

from typing import Any

from .knowledge import Knowledge, joiner
from .sentences import split_sentences

SEP = "</s>"


def build_fact_records(doc: dict[str, Any], know: Knowledge) -> list[dict[str, Any]]:
    """One Fact record per sentence window holding at least one fact.

    Facts come from ordered pairs (head before tail in order of first mention, then by relation
    id), so the order is deterministic; at most ``max_facts`` per record.
    """
    opts = know.options
    lang = doc["lang"]
    fact_lang = know.other(lang) if opts.fact_lang == "target" else lang
    names = know.names[fact_lang]
    text = doc["text"]
    matcher = know.matchers[lang]
    spans = matcher.find_concepts(text)
    if len(spans) < 2:
        return []
    sents = split_sentences(text)
    w = max(1, opts.window)
    windows = [(sents[i][0], sents[min(i + w, len(sents)) - 1][1]) for i in range(0, len(sents), w)]
    join = joiner(fact_lang)
    tails_of = know.tails
    relations_of = know.relations
    records: list[dict[str, Any]] = []
    mi = 0
    for wi, (ws, we) in enumerate(windows):
        ents: list[tuple[int, int, str]] = []  # matches inside the window
        while mi < len(spans) and spans[mi][0] < we:
            s, e, cids = spans[mi]
            mi += 1
            if s >= ws and e <= we:
                ents.append((s, e, cids[0]))
        if len(ents) < 2:
            continue
        pos = {}  # concept -> rank of first mention
        for _s, _e, c in ents:
            if c not in pos:
                pos[c] = len(pos)
        facts: list[tuple[str, str, str]] = []
        cap = opts.max_facts
        for h in pos:
            outs = tails_of.get(h)
            if not outs or h not in names:
                continue
            # Tails are few per head: look them up in the window rather than pairing every mention.
            hits = [t for t in outs if t in pos and t != h and t in names]
            if len(hits) > 1:
                hits.sort(key=pos.__getitem__)
            for t in hits:
                for rel in relations_of[(h, t)]:
                    facts.append((h, rel, t))
            if len(facts) >= cap:
                break
        if not facts:
            continue
        facts = facts[: opts.max_facts]
        body = text[ws:we]
        entities = [
            {"start": s - ws, "end": e - ws, "concept": c, "lang": lang, "switched": False} for s, e, c in ents
        ]
        relations = []
        pieces = [body]
        pos = len(body)
        for h, rel, t in facts:
            pieces.append(SEP)
            pos += len(SEP)
            parts = []
            for kind, piece in (("head", names[h]), ("rel", know.relation_name(rel, fact_lang)), ("tail", names[t])):
                if parts:
                    pieces.append(join)
                    pos += len(join)
                parts.append((kind, pos, pos + len(piece)))
                pieces.append(piece)
                pos += len(piece)
            (_, hs, he), (_, rs, re_), (_, ts, te) = parts
            entities.append({"start": hs, "end": he, "concept": h, "lang": fact_lang, "switched": False})
            entities.append({"start": ts, "end": te, "concept": t, "lang": fact_lang, "switched": False})
            relations.append(
                {"start": rs, "end": re_, "rel": rel, "lang": fact_lang, "head": len(entities) - 2, "tail": len(entities) - 1}
            )
        records.append(
            {
                "id": f"{doc['id']}#{wi}",
                "lang": lang,
                "text": "".join(pieces),
                "task": "fact",
                "entities": entities,
                "relations": relations,
            }
        )
    return records
