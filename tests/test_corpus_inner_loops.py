"""The corpus builders' inner loops (switching, fact search, record writing, the matcher's word-run
marking) against simple references built from the definitions and ``kbioxlm.schema``, on random
inputs; and a whole entity+fact build pinned to the bytes the builders wrote before they were
rewritten (the hand-written C they replaced wrote the same bytes)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbioxlm.corpus.entity import sample_indices, switch_entities
from kbioxlm.corpus.fact import FACT_SEP, fact_heads, fact_record, window_facts
from kbioxlm.corpus.knowledge import KeyInfo
from kbioxlm.corpus.runner import encode_record
from kbioxlm.io import dumps
from kbioxlm.kb.store import KnowledgeBase
from kbioxlm.schema import EntitySpan, validate_entity_record, validate_fact_record
from kbioxlm.kb.matcher import mark_runs, unmark_spans

ALPHABET = 'ab c%"\\\u00e9\u4e2d\u6587\U0001f600\x00\n\t\r\b\f\x1f\x7f\u2028\u00ff\u07ff\u0800\uffff'


def _rand_text(r: random.Random, n: int) -> str:
    return "".join(r.choice(ALPHABET) for _ in range(n))


def _random_documents(seed: int, n: int, min_chars: int) -> Iterator[tuple[random.Random, str, list, list]]:
    """``n`` random texts with random non-overlapping spans and their key infos."""
    r = random.Random(seed)
    for _ in range(n):
        text = _rand_text(r, r.randint(min_chars, 40))
        spans, infos, pos = [], [], 0
        while pos < len(text) - 1 and r.random() < 0.9:
            s = r.randint(pos, len(text) - 1)
            e = r.randint(s + 1, min(len(text), s + 4))
            cid = "C" + _rand_text(r, 2)
            name = _rand_text(r, r.randint(1, 5)) if r.random() < 0.7 else None
            spans.append((s, e, r.randrange(100)))
            infos.append(KeyInfo(cid, name, cid + "0", ()))
            pos = e
        yield r, text, spans, infos


def _reference_switch(text: str, spans: list, infos: list, chosen: set[int]) -> tuple[str, list[EntitySpan]]:
    """Switch by rebuilding the text left to right, measuring each entity's new start."""
    out, ents, pos = "", [], 0
    for i, ((s, e, _k), info) in enumerate(zip(spans, infos)):
        out += text[pos:s]
        surface = info.target_name if i in chosen else text[s:e]
        ents.append(
            EntitySpan(
                start=len(out),
                end=len(out) + len(surface),
                concept=info.concept,
                lang="zh" if i in chosen else "en",
                switched=i in chosen,
            )
        )
        out += surface
        pos = e
    return out + text[pos:], ents


def test_switching_against_a_reference() -> None:
    for r, text, spans, infos in _random_documents(0, 400, 0):
        switchable = [i for i, info in enumerate(infos) if info.target_name is not None]
        quota, seed = r.randint(-1, len(switchable) + 1), r.getrandbits(64)
        doc_id = r.choice([_rand_text(r, 3), r.randrange(-5, 2**70)])
        rec, k = switch_entities(doc_id, text, "en", "zh", spans, infos, quota, seed)
        assert k == max(0, min(quota, len(switchable)))
        chosen = {switchable[j] for j in sample_indices(seed, len(switchable), k)}
        new_text, ents = _reference_switch(text, spans, infos, chosen)
        assert rec == {"id": doc_id, "lang": "en", "text": new_text, "task": "entity", "entities": ents}
        if spans and new_text.strip():
            validate_entity_record(rec)
        assert encode_record(rec) == dumps(rec).encode()


def test_sample_indices_are_pinned_distinct_and_uniform() -> None:
    # Which entities a corpus switches is part of its definition: these draws must never change.
    # (Values of the SplitMix64 + Floyd sampler the corpora have been built with since 2026-11-26.)
    assert sample_indices(0, 10, 3) == [0, 3, 7]
    assert sample_indices(2**64 - 1, 1000, 4) == [219, 426, 891, 910]
    assert sample_indices(987654321987654321, 40, 10) == [2, 7, 12, 20, 22, 23, 24, 28, 33, 39]
    for seed in (0, 1, 2**64 - 1, 987654321987654321):
        for n, k in ((0, 0), (1, 1), (5, 5), (40, 10), (1000, 3)):
            got = sample_indices(seed, n, k)
            assert len(set(got)) == k and got == sorted(got) and all(0 <= i < n for i in got)
    counts = [0] * 10
    for seed in range(5000):
        for i in sample_indices(seed, 10, 3):
            counts[i] += 1
    assert min(counts) > 1300 and max(counts) < 1700
    with pytest.raises(ValueError, match="cannot draw"):
        sample_indices(0, 2, 3)


def test_word_run_marking_and_unmarking_against_references() -> None:
    from kbioxlm.kb.matcher import _UNSPACED_RANGES

    def reference(text: str, excluded: tuple) -> str | None:
        word = [c.isalnum() and not any(lo <= ord(c) <= hi for lo, hi in excluded) for c in text]
        out = "".join(
            ("\x00" if w and (i == 0 or not word[i - 1]) else "")
            + c
            + ("\x00" if w and (i + 1 == len(text) or not word[i + 1]) else "")
            for i, (c, w) in enumerate(zip(text, word))
        )
        return out if any(word) else None

    r = random.Random(5)
    # Letters, digits, numerals (Roman, fractions, Arabic-Indic), CJK, astral letters, "_", NUL.
    pool = [chr(c) for c in [*range(0, 0x3000, 7), *range(0x4E00, 0x4E40), 0x1D7CE, 0x20000, 0x5F, 0x2160, 0xBD, 0x661]]
    for _ in range(5000):
        text = "".join(r.choice(pool) for _ in range(r.randint(0, 12)))
        for excluded in ((), _UNSPACED_RANGES):
            assert mark_runs(text, excluded) == reference(text, excluded)
    for _ in range(300):
        marked = _rand_text(r, r.randint(0, 30))
        matches, pos = [], 0
        while pos < len(marked) and r.random() < 0.8:
            s = r.randint(pos, len(marked) - 1)
            e = r.randint(s + 1, len(marked))
            matches.append((s, e, r.randrange(9)))
            pos = e
        plain = [i - marked.count("\x00", 0, i) for i in range(len(marked) + 1)]  # marked -> plain offset
        assert unmark_spans(marked, matches, "\x00") == [(plain[s], plain[e], k) for s, e, k in matches]


def test_fact_search_against_a_reference() -> None:
    def reference(concepts: list[str], names, relations, cap: int) -> list[tuple[str, str, str]]:
        """Every ordered pair of distinct concepts of the window, heads then tails in order of
        first mention, relations sorted; whole heads until ``cap`` is reached."""
        order = list(dict.fromkeys(concepts))
        facts: list[tuple[str, str, str]] = []
        for h in order:
            if len(facts) >= cap:
                break
            for t in order:
                if t != h and h in names and t in names:
                    facts += [(h, rel, t) for rel in relations.get((h, t), ())]
        return facts[:cap]

    r = random.Random(2)
    pool = [f"C{i}" for i in range(12)]
    for _ in range(300):
        tails_of = {c: tuple(t for t in r.sample(pool, r.randint(0, 3)) if t != c) for c in pool}
        relations = {
            (h, t): tuple(sorted(r.sample(["is_a", "part_of", "treats"], r.randint(1, 2))))
            for h, ts in tails_of.items()
            for t in ts
        }
        names = {c: c.lower() for c in pool if r.random() < 0.8}
        concepts = [r.choice(pool) for _ in range(r.randint(0, 10))]
        infos = [KeyInfo(c, None, c, tails_of[c]) for c in concepts]
        assert fact_heads(infos) == [i for i, c in enumerate(concepts) if any((c, t) in relations for t in concepts)]
        cap = r.randint(1, 6)
        lo = r.randint(0, len(infos))
        hi = r.randint(lo, len(infos))
        assert window_facts(infos[lo:hi], names, relations, cap) == reference(concepts[lo:hi], names, relations, cap)


def test_fact_record_spans_and_serialisation() -> None:
    for r, text, spans, infos in _random_documents(4, 200, 2):
        lo = r.randint(0, len(spans))
        hi = r.randint(lo, len(spans))
        ws = spans[lo][0] if lo < hi else 0
        pool = ["C1", 'C"2', "C\\3", "C\u20284", "C%5"]
        names = {c: _rand_text(r, r.randint(1, 4)) for c in pool}
        labels = {"is_a": "is a", 'part"of': _rand_text(r, 3)}
        facts = [(r.choice(pool), r.choice(list(labels)), r.choice(pool)) for _ in range(r.randint(0, 4))]
        join = r.choice(["", " "])
        rec = fact_record("d#1", "en", text[ws:], spans[lo:hi], infos[lo:hi], ws, facts, names, labels, join, "zh")
        assert encode_record(rec) == dumps(rec).encode()
        assert rec["text"] == text[ws:] + "".join(
            FACT_SEP + names[h] + join + labels[x] + join + names[t] for h, x, t in facts
        )
        assert len(rec["entities"]) == hi - lo + 2 * len(facts) and len(rec["relations"]) == len(facts)
        for ent, (s, e, _k), info in zip(rec["entities"], spans[lo:hi], infos[lo:hi]):
            assert ent == {
                "start": s - ws,
                "end": e - ws,
                "concept": info.first_concept,
                "lang": "en",
                "switched": False,
            }
        for rel, (h, lab, t) in zip(rec["relations"], facts):
            assert rec["text"][rel["start"] : rel["end"]] == labels[lab] and rel["rel"] == lab
            head, tail = rec["entities"][rel["head"]], rec["entities"][rel["tail"]]
            assert rec["text"][head["start"] : head["end"]] == names[h] and head["concept"] == h
            assert rec["text"][tail["start"] : tail["end"]] == names[t] and tail["concept"] == t
        if rec["text"].strip():
            validate_fact_record(rec)


def test_record_encoding_equals_generic_json() -> None:
    recs = [
        {
            "id": 3,
            "lang": "zh",
            "text": 'a"b\\c\u2028 高血压</s>x\x00\x1f\x7f',
            "task": "fact",
            "entities": [
                {"start": 0, "end": 1, "concept": 'C"1\\', "lang": "zh", "switched": False},
                {"start": 2, "end": 3, "concept": "HP:0000822", "lang": "en", "switched": True},
            ],
            "relations": [{"start": 1, "end": 2, "rel": "is_a\n", "lang": "en", "head": 0, "tail": 1}],
        },
        {"id": "d", "lang": "en", "text": "x", "task": "entity", "entities": []},
        {"id": 2**80, "lang": "en", "text": "\U0001f600", "task": "entity", "entities": []},
    ]
    for rec in recs:
        assert encode_record(rec) == dumps(rec).encode()
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate has no UTF-8, as with str.encode
        encode_record({"id": "d", "lang": "en", "text": "a\ud800b", "task": "entity", "entities": []})


# The bytes of the build below, written by the builders as they were before this rewrite (the
# compiled C loops and their Python twins agreed): the outputs must never change silently.
PINNED = {
    "entity": "90df58836278d496368f50895c1e8dbe351c2a5d0639038d4923295e59d57ad5",
    "fact": "24098dfcd29696ce5136e060809382db950aeded5cfc9282f3756d6f7cdf4cfb",
}


def pinned_build(tmp_path: Path) -> dict[str, bytes]:
    """An entity+fact build over a small KB whose ids and names need JSON escapes (quotes,
    backslashes, ``%``), in both languages, with switching, facts, balance and a 2-sentence window."""
    from kbioxlm.corpus import build
    from kbioxlm.corpus.knowledge import BuildOptions

    kb = KnowledgeBase(tmp_path / "kb.sqlite", create=True)
    words = ["fever", "cough", "rash", "renal failure", "x-ray", "50% burn", "IL-6", "covid 19"]
    zh = ["发热", "咳嗽", "皮疹", "肾衰竭", "X光", "百分之五十烧伤", "白介素6", "新冠"]
    cids = [f"C{i}" for i in range(len(words))]
    cids[5], cids[6] = "C%5", 'C"6\\'
    kb.add_concepts([(c, None, "t") for c in cids])
    kb.add_names([(c, "en", w, 1, "t") for c, w in zip(cids, words)] + [(c, "zh", z, 1, "t") for c, z in zip(cids, zh)])
    kb.add_relations(
        [(cids[i], "is_a", cids[(i + 1) % len(cids)], "t") for i in range(len(cids))]
        + [(cids[0], "may_treat", cids[2], "t")]
    )
    kb.set_relation_names([("is_a", "zh", "是一种")])
    kb.commit()
    kb.close()
    r = random.Random(3)
    docs = []
    for d in range(60):
        lang = "en" if d % 2 else "zh"
        pool = words if lang == "en" else zh
        sep = ". " if lang == "en" else "。"
        text = sep.join(" ".join(r.choice(pool) for _ in range(r.randint(1, 5))) for _ in range(r.randint(1, 4)))
        docs.append({"id": f"d{d}" if d % 5 else d, "lang": lang, "text": text + ("ABC1" if d % 7 == 0 else "")})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    opts = BuildOptions(kb=str(tmp_path / "kb.sqlite"), lang="en", target_lang="zh", seed=11, max_switches=3, window=2)
    outs = {lv: str(tmp_path / f"{lv}.jsonl") for lv in ("entity", "fact")}
    build._KNOW = build._KNOW_KEY = None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            build.run_levels(opts, str(inp), outs, progress=False)
    finally:
        build._KNOW = build._KNOW_KEY = None
    return {lv: Path(p).read_bytes() for lv, p in outs.items()}


def test_whole_build_is_pinned(tmp_path: Path) -> None:
    out = pinned_build(tmp_path)
    assert out["entity"].count(b'"switched":true') > 20 and out["fact"].count(b'"rel"') > 10
    for lv, data in out.items():
        for line in data.decode().splitlines():
            rec = json.loads(line)
            assert dumps(rec) == line
            (validate_entity_record if lv == "entity" else validate_fact_record)(rec)
    assert {lv: hashlib.sha256(data).hexdigest() for lv, data in out.items()} == PINNED
