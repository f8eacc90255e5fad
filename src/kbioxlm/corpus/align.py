"""Alignment records from the KB (``kbioxlm corpus align``): the names of one concept in two
languages, for a contrastive synonym-alignment pretraining task (not in the paper).

One record per concept with a name in both ``--lang`` and ``--target-lang`` (held-out concepts
left out)::

    {"id": "HP:0000822", "task": "align", "concept": "HP:0000822",
     "names": {"en": ["Hypertension", "High blood pressure", ...], "zh": ["高血压"]},
     "mentions": [{"lang": "en", "text": "... with hypertension were ...", "start": 9, "end": 21}]}

* ``names[lang]``: the preferred name (:meth:`KnowledgeBase.preferred_names`) first, then the
  other names of the concept in that language in sorted order, at most ``max_names``.
* Order: the sorted concept ids permuted by ``numpy.random.Generator(PCG64(seed))``.
* Several target languages (``--target-langs zh,es,fr,de``): one record per concept and target
  language ``X`` with names in ``--lang`` and ``X`` (``names`` holds those two), the list of
  ``(concept, X)`` (concepts sorted within each X, the Xs in the order given) permuted as above;
  a concept named in several Xs has several records (same id). One target language gives the
  same bytes however it is passed.
* ``mentions`` (only with ``entity_records``, the output of ``corpus entity``): up to
  ``max_mentions`` per language of the concept's non-switched entity spans, each with a context of
  at most 200 characters around it. Which ones: the smallest keys ``blake2b(seed, record id,
  start, end)`` among the candidates (identical contexts counted once), so the choice depends
  on the seed and the records, not on their order or on the number of files they are split into.
* Held-out concepts (``exclude``): no record, and none of their names (in any language,
  compared case-folded) appears anywhere: such a name is dropped from every other concept's
  list, a concept whose preferred name is one gets no record, and a mention context never
  reaches over a held-out name, a switched entity (code-switched text) or an entity of a
  held-out concept.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KbioxlmError
from ..io import atomic_write, dumps, iter_jsonl
from ..kb.matcher import Matcher, fold_case, is_word_char
from ..kb.split import held_out_names, warn_unknown
from ..kb.store import KnowledgeBase
from ..schema import is_unspaced, validate_entity_record

CONTEXT_CHARS = 200


def build_align(
    kb_path: str | Path,
    lang: str,
    target_lang: str | Sequence[str],
    out: str | Path,
    seed: int = 0,
    exclude: tuple[str, ...] | list[str] = (),
    max_names: int = 8,
    entity_records: tuple[str, ...] | list[str] = (),
    max_mentions: int = 2,
) -> dict[str, Any]:
    """Write the alignment records of ``kb_path`` to ``out`` (atomically); returns (and prints) the summary.

    ``target_lang``: one language, or several (``--target-langs``): then one record per concept
    and target language ``X`` with names in ``lang`` and ``X`` (EN<->X pairs for every X), all in
    one seeded order."""
    t0 = time.perf_counter()
    targets = (target_lang,) if isinstance(target_lang, str) else tuple(target_lang)
    if not targets or len(set(targets)) != len(targets):
        raise KbioxlmError(f"--target-langs must list distinct languages, got {','.join(targets) or 'none'}")
    if lang in targets:
        raise KbioxlmError(
            f"--lang and --target-lang are both {lang!r}"
            if len(targets) == 1
            else f"--target-langs includes --lang {lang!r}"
        )
    if max_names < 1:
        raise KbioxlmError(f"--max-names must be at least 1, got {max_names}")
    if max_mentions < 0:
        raise KbioxlmError(f"--max-mentions must not be negative, got {max_mentions}")
    if seed < 0:
        raise KbioxlmError(f"--seed must not be negative for corpus align, got {seed}")
    if not Path(kb_path).exists():
        raise KbioxlmError(f"{kb_path}: knowledge base not found (build it with `kbioxlm kb import ...`)")
    for path in entity_records:
        if not Path(path).exists():
            raise KbioxlmError(f"{path}: cannot read (no such file)")
    langs = (lang, *targets)
    held = frozenset(exclude)
    held_names: frozenset[str] = frozenset()
    unknown = 0
    with KnowledgeBase(kb_path) as kb:
        for lg in langs:
            kb.require_language(lg)
        if held:
            held_names, unknown = held_out_names(kb, tuple(exclude))
        pref = {lg: kb.preferred_names(lg) for lg in langs}
        # (concept, target language) of every record, concepts sorted within each language
        items: list[tuple[str, str]] = []
        n_both = 0
        for tl in targets:
            both = [c for c in pref[lang] if c in pref[tl] and c not in held]
            n_both += len(both)
            items += [
                (c, tl) for c in sorted(both) if all(fold_case(pref[lg][c]) not in held_names for lg in (lang, tl))
            ]
        wanted = {c for c, _tl in items}
        others: dict[str, dict[str, list[str]]] = {}
        for lg in langs:
            syn: dict[str, list[str]] = {}
            for text, cid, _is_pref in kb.iter_names(lg):
                if cid in wanted and text != pref[lg][cid] and (not held_names or fold_case(text) not in held_names):
                    syn.setdefault(cid, []).append(text)
            others[lg] = syn
    if held:
        warn_unknown(unknown, len(held))

    def names_of(cid: str, lg: str) -> list[str]:
        rest = sorted(set(others[lg].get(cid, ())))
        return [pref[lg][cid], *rest][:max_names]

    mentions: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if entity_records and max_mentions:
        mentions = _collect_mentions(entity_records, wanted, langs, seed, max_mentions, held, held_names)

    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(items))
    n_names = dict.fromkeys(langs, 0)
    n_mentions = dict.fromkeys(langs, 0)
    with atomic_write(out) as fh:
        for i in order:
            cid, tl = items[int(i)]
            pair = (lang, tl)
            rec: dict[str, Any] = {"id": cid, "task": "align", "concept": cid, "names": {}}
            for lg in pair:
                rec["names"][lg] = names_of(cid, lg)
                n_names[lg] += len(rec["names"][lg])
            ms = mentions.get(cid)
            if ms and any(ms.get(lg) for lg in pair):
                rec["mentions"] = [m for lg in pair for m in ms.get(lg, ())]
                for lg in pair:
                    n_mentions[lg] += len(ms.get(lg, ()))
            fh.write(dumps(rec) + "\n")
    summary: dict[str, Any] = {"records": len(items)}
    if len(targets) > 1:
        summary.update({f"records[{tl}]": sum(t == tl for _c, t in items) for tl in targets})
    summary.update({f"names[{lg}]": n for lg, n in n_names.items()})
    if entity_records:
        summary.update({f"mentions[{lg}]": n for lg, n in n_mentions.items()})
    if held:
        summary["excluded_concepts"] = len(held)
        summary["excluded_unknown"] = unknown
        summary["dropped_held_out_name"] = n_both - len(items)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    print("corpus align: " + " ".join(f"{k}={v}" for k, v in summary.items()) + f" -> {out}")
    return summary


def _validate(rec: dict[str, Any]) -> None:
    if rec.get("task") != "entity":
        raise ValueError(
            f"expected an entity record (task 'entity', from `kbioxlm corpus entity`), got task {rec.get('task')!r}"
        )
    validate_entity_record(rec)
    for i, e in enumerate(rec["entities"]):
        if not isinstance(e.get("switched"), bool):
            raise ValueError(f"entities[{i}] needs a boolean 'switched'")


def _collect_mentions(
    paths: tuple[str, ...] | list[str],
    wanted: set[str],
    langs: tuple[str, ...],
    seed: int,
    k: int,
    held: frozenset[str],
    held_names: frozenset[str],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """concept → language → its chosen mentions (ordered by key)."""
    # (concept, lang) -> max-heap (negated keys) of (negated key, (text, start, end), mention)
    heaps: dict[tuple[str, str], list[tuple[tuple, tuple, dict[str, Any]]]] = {}
    blockers_matcher: dict[str, Matcher] = {}
    for fi, path in enumerate(paths):
        for lineno, rec in iter_jsonl(path, _validate):
            lang = rec["lang"]
            if lang not in langs:
                continue
            text = rec["text"]
            blocks: list[tuple[int, int]] | None = None
            for e in rec["entities"]:
                cid = e["concept"]
                if e["switched"] or e["lang"] != lang or cid not in wanted:
                    continue
                s, t = e["start"], e["end"]
                h = hashlib.blake2b(f"{seed}\x1f{rec['id']}\x1f{s}\x1f{t}".encode(), digest_size=8).digest()
                key = (int.from_bytes(h, "big"), fi, lineno, s)
                heap = heaps.setdefault((cid, lang), [])
                if len(heap) >= k and key >= _neg(heap[0][0]):
                    continue
                if blocks is None:
                    blocks = _blockers(rec, lang, held, held_names, blockers_matcher)
                m = _context(text, s, t, blocks, is_unspaced(lang))
                if m is None or (held_names and fold_case(text[s:t]) in held_names):
                    continue
                ident = (m["text"], m["start"], m["end"])
                for j, (nk, other, _m) in enumerate(heap):
                    if other == ident:  # the same context again (duplicate documents): keep the smaller key
                        if key < _neg(nk):
                            heap[j] = (_negate(key), ident, m)
                            heapq.heapify(heap)
                        break
                else:
                    item = (_negate(key), ident, m)
                    if len(heap) < k:
                        heapq.heappush(heap, item)
                    else:
                        heapq.heapreplace(heap, item)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (cid, lang), heap in sorted(heaps.items()):
        if heap:
            chosen = sorted(heap, key=lambda it: _neg(it[0]))
            out.setdefault(cid, {})[lang] = [{"lang": lang, **m} for _nk, _id, m in chosen]
    return out


def _negate(key: tuple) -> tuple:
    return tuple(-x for x in key)


def _neg(nkey: tuple) -> tuple:
    return tuple(-x for x in nkey)


def _blockers(
    rec: dict[str, Any], lang: str, held: frozenset[str], held_names: frozenset[str], matchers: dict[str, Matcher]
) -> list[tuple[int, int]]:
    """Spans a mention context must not reach into: switched entities (text of the other language),
    entities of held-out concepts and occurrences of held-out names (any language, case-folded)."""
    spans = [(e["start"], e["end"]) for e in rec["entities"] if e["switched"] or e["concept"] in held]
    if held_names:
        m = matchers.get(lang)
        if m is None:
            m = matchers[lang] = Matcher(((n, "held") for n in sorted(held_names)), lang, min_length=1)
        spans.extend((s, e) for s, e, _k in m.find_spans(rec["text"]))
    return sorted(spans)


def _context(text: str, s: int, e: int, blocks: list[tuple[int, int]], unspaced: bool) -> dict[str, Any] | None:
    """``{"text", "start", "end"}``: at most :data:`CONTEXT_CHARS` characters of ``text`` around the
    span ``s..e``, about as much on each side, not reaching into ``blocks``, without partial words
    at its edges; ``None`` when the span itself is too long or overlaps a block."""
    if e - s > CONTEXT_CHARS:
        return None
    lo, hi = 0, len(text)
    for bs, be in blocks:
        if bs < e and s < be:
            return None
        if be <= s:
            lo = max(lo, be)
        elif bs >= e:
            hi = min(hi, bs)
    extra = CONTEXT_CHARS - (e - s)
    left = min(extra // 2, s - lo)
    right = min(extra - left, hi - e)
    left = min(extra - right, s - lo)
    a, b = s - left, e + right
    # no partial word at a cut (a word runs on past the cut)
    if a > 0 and a < s and is_word_char(text[a - 1], unspaced) and is_word_char(text[a], unspaced):
        while a < s and is_word_char(text[a], unspaced):
            a += 1
    if b < len(text) and b > e and is_word_char(text[b - 1], unspaced) and is_word_char(text[b], unspaced):
        while b > e and is_word_char(text[b - 1], unspaced):
            b -= 1
    while a < s and text[a].isspace():
        a += 1
    while b > e and text[b - 1].isspace():
        b -= 1
    return {"text": text[a:b], "start": s - a, "end": e - a}
