"""The corpus builders' per-entity inner loops: compiled (``kbioxlm._speedups``, built from
``_speedups.c`` at install when a C compiler is present) or their pure-Python twins below.

Both produce the same values (tests compare them on random inputs and through whole builds); the compiled ones
make the whole entity+fact build about twice as fast on entity-dense text. Set
``KBIOXLM_PURE_PYTHON=1`` to force the Python twins. :data:`COMPILED` says which are in use.

Entity formats are per-key strings ``'{"start":%d,"end":%d' + rest``: the JSON object of one
entity with ``%d`` for its offsets and any literal ``%`` doubled (see ``Knowledge.entity_infos``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain, repeat
from json.encoder import encode_basestring
from operator import add, itemgetter
from typing import Any

_start_end = itemgetter(0, 1)
_keep_format = itemgetter(1)


def py_switch_entities(
    text: str, spans: list[tuple[int, int, Any]], infos: list[tuple], quota: int, seed: int, prefix: str
) -> tuple[bytes, int]:
    """Switch ``k = min(quota, switchable)`` of the spans whose ``infos[i][0]`` (target name) is not
    ``None``, drawn by :func:`py_sample_indices` ``(seed, switchable, k)`` among them: the Entity
    record as one UTF-8 JSON line (no newline) made of ``prefix`` (its ``{"id":..,"lang":..``
    part), the text with those spans replaced by their target name, and the JSON objects of all
    entities (``infos[i][2]`` for switched ones, else ``infos[i][1]``) with offsets in the new
    text; and ``k``."""
    switchable = [i for i, info in enumerate(infos) if info[0] is not None]
    k = max(0, min(quota, len(switchable)))
    chosen = [switchable[j] for j in py_sample_indices(seed, len(switchable), k)]
    offsets = list(chain.from_iterable(map(_start_end, spans)))  # s0, e0, s1, e1, ...
    fmts = list(map(_keep_format, infos))
    if not chosen:
        return _line(prefix, text, "entity", ",".join(fmts) % tuple(offsets)), 0
    pieces: list[str] = []
    new: list[int] = []
    pos = 0  # in the old text
    shift = 0  # new offset - old offset
    done = 0  # entities before this index are in ``new``
    for i in chosen:
        new += map(add, offsets[2 * done : 2 * i], repeat(shift)) if shift else offsets[2 * done : 2 * i]
        s, e = spans[i][0], spans[i][1]
        info = infos[i]
        name = info[0]
        pieces.append(text[pos:s])
        pieces.append(name)
        ns = s + shift
        shift += len(name) - (e - s)
        new.append(ns)
        new.append(e + shift)
        fmts[i] = info[2]
        pos = e
        done = i + 1
    new += map(add, offsets[2 * done :], repeat(shift)) if shift else offsets[2 * done :]
    pieces.append(text[pos:])
    return _line(prefix, "".join(pieces), "entity", ",".join(fmts) % tuple(new)), k


def _line(prefix: str, text: str, task: str, entities: str, relations: str | None = None) -> bytes:
    rels = "" if relations is None else ',"relations":[' + relations + "]"
    return (prefix + ',"text":' + encode_basestring(text) + ',"task":"' + task + '","entities":[' + entities + "]"
            + rels + "}").encode()


def _format_entities(
    spans: list[tuple[int, int, Any]], infos: list[tuple], indices: Sequence[int], delta: int, field: int
) -> str:
    """The comma-joined JSON objects of ``spans[i]`` for ``i`` in ``indices``, written with format
    ``infos[i][field]`` and offsets ``(start - delta, end - delta)``."""
    idx = list(indices)
    fmt = ",".join([infos[i][field] for i in idx])
    return fmt % tuple([x - delta for i in idx for x in spans[i][:2]])


def py_unmark_spans(marked: str, matches: list[tuple[int, int, Any]], sentinel: str) -> list[tuple[int, int, Any]]:
    """``matches`` ``(start, end, key)`` in ``marked`` (in text order, not overlapping) with offsets
    in the text without the ``sentinel`` characters (zero-width there)."""
    out = []
    append = out.append
    count = marked.count
    prev = shift = 0  # shift: sentinels before the current position
    for s, e, k in matches:
        shift += count(sentinel, prev, s)
        start = s - shift
        shift += count(sentinel, s, e)
        append((start, e - shift, k))
        prev = e
    return out


_MASK64 = (1 << 64) - 1


def py_sample_indices(seed: int, n: int, k: int) -> list[int]:
    """``k`` distinct integers of ``range(n)``, sorted, drawn uniformly with Floyd's algorithm;
    draw ``j`` is ``(x * (j + 1)) >> 64`` for the next SplitMix64 output ``x`` of ``seed``.

    Why not ``random.Random(seed).sample``: seeding a Mersenne Twister costs more than the rest
    of a document's switching; this needs one 64-bit state and ``k`` multiplications.
    """
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} of {n}")
    state = seed & _MASK64
    taken: set[int] = set()
    for j in range(n - k, n):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
        t = (z * (j + 1)) >> 64
        taken.add(j if t in taken else t)
    return sorted(taken)


def py_fact_heads(infos: list[tuple]) -> list[int]:
    """Indices of the mentions whose concept (``infos[i][3]``) has a tail (``infos[i][4]``) among
    the concepts of all mentions. (The compiled twin compares the hashes packed in
    ``infos[i][6]`` instead, a superset only on a 64-bit hash collision, which only costs the
    caller a look at one more window.)"""
    seen = set(map(itemgetter(3), infos))
    return [i for i, info in enumerate(infos) if not seen.isdisjoint(info[4])]


def py_window_facts(
    infos: list[tuple],
    lo: int,
    hi: int,
    names: dict[str, str],
    tails_of: dict[str, tuple[str, ...]],
    relations: dict[tuple[str, str], tuple[str, ...]],
    cap: int,
) -> list[tuple[str, str, str]]:
    """Facts ``(head, rel, tail)`` of the window of mentions ``lo..hi-1`` (``infos[i][3]``: concept,
    ``[4]``: its tails): heads in order of first mention; per head its tails of ``tails_of`` that
    occur in the window, both with a name in ``names``, in order of first mention; per pair its
    relations; stop after the head that reaches ``cap``."""
    window = infos[lo:hi]
    rank = {c: r for r, c in enumerate(dict.fromkeys(map(itemgetter(3), window)))}
    facts: list[tuple[str, str, str]] = []
    for h in dict.fromkeys(info[3] for info in window if not rank.keys().isdisjoint(info[4])):
        if h not in names:
            continue
        hits = [t for t in tails_of.get(h, ()) if t in rank and t != h and t in names]
        hits.sort(key=rank.__getitem__)
        for t in hits:
            for rel in relations[(h, t)]:
                facts.append((h, rel, t))
        if len(facts) >= cap:
            break
    return facts[:cap]


FACT_SEP = "</s>"  # between a window and each appended fact (DESIGN.md: after </s>)


def py_fact_line(
    prefix: str, body: str, spans: list[tuple[int, int, Any]], infos: list[tuple], lo: int, hi: int, ws: int,
    facts: list[tuple[str, str, str]], names: dict[str, str], labels: dict[str, str], join: str,
    fact_lang_js: str, cache: dict[str, str],
) -> bytes:
    """One Fact record as a UTF-8 JSON line (no newline), ``prefix`` its ``{"id":..,"lang":..``
    part. Text: ``body`` (the window, starting at document offset ``ws``) then ``</s>`` + head
    name + ``join`` + relation label + ``join`` + tail name per fact. Entities: ``spans[lo:hi]``
    (format ``infos[i][5]``, offsets relative to ``ws``), then head and tail of every fact in the
    fact language; relations: one per fact. ``names``/``labels``: concept -> name and relation ->
    label in the fact language; ``cache``: str -> JSON literal."""

    def literal(x: str) -> str:
        v = cache.get(x)
        if v is None:
            v = cache[x] = encode_basestring(x)
        return v

    entities = [_format_entities(spans, infos, range(lo, hi), ws, 5)] if hi > lo else []
    n_ents = hi - lo
    relations = []
    pieces = [body]
    p = len(body)
    for h, rel, t in facts:
        hn, rn, tn = names[h], labels[rel], names[t]
        hs = p + len(FACT_SEP)
        rs = hs + len(hn) + len(join)
        ts = rs + len(rn) + len(join)
        p = ts + len(tn)
        pieces.extend((FACT_SEP, hn, join, rn, join, tn))
        tail = ',"lang":' + fact_lang_js + ',"switched":false}'
        entities.append('{"start":%d,"end":%d,"concept":' % (hs, hs + len(hn)) + literal(h) + tail)
        entities.append('{"start":%d,"end":%d,"concept":' % (ts, p) + literal(t) + tail)
        n_ents += 2
        relations.append('{"start":%d,"end":%d,"rel":' % (rs, rs + len(rn)) + literal(rel) + ',"lang":' + fact_lang_js
                         + ',"head":%d,"tail":%d}' % (n_ents - 2, n_ents - 1))
    return _line(prefix, "".join(pieces), "fact", ",".join(entities), ",".join(relations))


@lru_cache(maxsize=8)
def _runs_pattern(excluded: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    # ``[^\W_]`` is exactly str.isalnum (CPython's \w is isalnum() or "_").
    ranges = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in excluded)
    return re.compile(f"([^\\W_{ranges}]+)")


def py_mark_runs(text: str, excluded: tuple[tuple[int, int], ...]) -> str | None:
    """``text`` with a NUL before and after every maximal run of word characters (``isalnum``
    and outside the inclusive code point ranges ``excluded``); ``None`` when there is none."""
    parts = _runs_pattern(excluded).split(text)
    return None if len(parts) == 1 else "\x00".join(parts)


def py_cached_infos(cache: list, spans: list[tuple[int, int, int]]) -> list | None:
    """``[cache[key] for (start, end, key) in spans]``, or ``None`` when one of them is ``None``."""
    infos = [cache[sp[2]] for sp in spans]
    return None if None in infos else infos


switch_entities = py_switch_entities
unmark_spans = py_unmark_spans
mark_runs = py_mark_runs
cached_infos = py_cached_infos
sample_indices = py_sample_indices
fact_heads = py_fact_heads
window_facts = py_window_facts
fact_line = py_fact_line
COMPILED = False
if not os.environ.get("KBIOXLM_PURE_PYTHON"):
    try:
        from ._speedups import (  # type: ignore[no-redef]
            cached_infos,
            fact_heads,
            fact_line,
            mark_runs,
            sample_indices,
            switch_entities,
            unmark_spans,
            window_facts,
        )

        COMPILED = True
    except ImportError:  # built without a C compiler: the twins above
        pass
