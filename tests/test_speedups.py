"""The compiled inner loops (kbioxlm._speedups) and their pure-Python twins give the same values,
on random inputs and through whole entity+fact builds."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbioxlm import speedups
from kbioxlm.cli import main
from kbioxlm.corpus import entity, fact
from kbioxlm.kb import matcher
from kbioxlm.kb.store import KnowledgeBase

compiled = pytest.mark.skipif(not speedups.COMPILED, reason="kbioxlm._speedups was not built (no C compiler at install)")
ALPHABET = "ab c%\"\\\u00e9\u4e2d\u6587\U0001f600\x00\n\t\r\b\f\x1f\x7f\u2028\u00ff\u07ff\u0800\uffff"


def _rand_text(r: random.Random, n: int) -> str:
    return "".join(r.choice(ALPHABET) for _ in range(n))


def _rand_spans_infos(r: random.Random, text: str) -> tuple[list, list]:
    spans, infos, pos = [], [], 0
    while pos < len(text) - 1 and r.random() < 0.9:
        s = r.randint(pos, len(text) - 1)
        e = r.randint(s + 1, min(len(text), s + 4))
        cid = json.dumps("C" + _rand_text(r, 2), ensure_ascii=False).replace("%", "%%")
        head = '{"start":%d,"end":%d,"concept":' + cid
        name = _rand_text(r, r.randint(1, 5)) if r.random() < 0.7 else None
        spans.append((s, e, r.randrange(100)))
        infos.append((name, head + ',"lang":"en","switched":false}', head + ',"lang":"zh","switched":true}'))
        pos = e
    return spans, infos


def _random_documents(seed: int, n: int, min_chars: int) -> Iterator[tuple[random.Random, str, list, list]]:
    """``n`` random texts with random non-overlapping spans and their entity infos."""
    r = random.Random(seed)
    for _ in range(n):
        text = _rand_text(r, r.randint(min_chars, 40))
        yield (r, text, *_rand_spans_infos(r, text))


@compiled
def test_switching_matches_the_python_twin() -> None:
    for r, text, spans, infos in _random_documents(0, 400, 0):
        switchable = [i for i, info in enumerate(infos) if info[0] is not None]
        quota, seed = r.randint(-1, len(switchable) + 1), r.getrandbits(64)
        prefix = '{"id":' + json.dumps(_rand_text(r, 3), ensure_ascii=False) + ',"lang":"en"'
        got = speedups.switch_entities(text, spans, infos, quota, seed, prefix)
        assert got == speedups.py_switch_entities(text, spans, infos, quota, seed, prefix)
        line, k = got
        assert k == max(0, min(quota, len(switchable)))
        chosen = {switchable[j] for j in speedups.sample_indices(seed, len(switchable), k)}
        rec = json.loads(line)
        assert rec["task"] == "entity" and line.decode().startswith(prefix + ',"text":')
        new_text, ents = rec["text"], rec["entities"]
        assert len(ents) == len(spans)
        for ent, (s, e, _k), i in zip(ents, spans, range(len(spans))):
            assert ent["switched"] == (i in chosen)
            assert new_text[ent["start"]:ent["end"]] == (infos[i][0] if i in chosen else text[s:e])


@compiled
def test_unmark_and_sampling_match_the_python_twins() -> None:
    r = random.Random(1)
    for _ in range(300):
        marked = _rand_text(r, r.randint(0, 30))
        matches, pos = [], 0
        while pos < len(marked) and r.random() < 0.8:
            s = r.randint(pos, len(marked) - 1)
            e = r.randint(s + 1, len(marked))
            matches.append((s, e, r.randrange(9)))
            pos = e
        assert speedups.unmark_spans(marked, matches, "\x00") == speedups.py_unmark_spans(marked, matches, "\x00")
    cache = [None, ("a",), ("b",), None]
    for spans in ([], [(0, 1, 1), (2, 3, 2)], [(0, 1, 1), (1, 2, 3)], [(5, 6, 0)]):
        assert speedups.cached_infos(cache, spans) == speedups.py_cached_infos(cache, spans)
    with pytest.raises(IndexError):
        speedups.cached_infos(cache, [(0, 1, 4)])
    for seed in (0, 1, 2**64 - 1, 987654321987654321):
        for n, k in ((0, 0), (1, 1), (5, 5), (40, 10), (1000, 3)):
            got = speedups.sample_indices(seed, n, k)
            assert got == speedups.py_sample_indices(seed, n, k)
            assert len(set(got)) == k and got == sorted(got) and all(0 <= i < n for i in got)
    # Uniform enough: every index of range(10) drawn about equally often.
    counts = [0] * 10
    for seed in range(5000):
        for i in speedups.sample_indices(seed, 10, 3):
            counts[i] += 1
    assert min(counts) > 1300 and max(counts) < 1700


@compiled
def test_word_run_marking_matches_the_python_twin() -> None:
    from kbioxlm.kb.matcher import _UNSPACED_RANGES

    r = random.Random(5)
    # Letters, digits, numerals (Roman, fractions, Arabic-Indic), CJK, astral letters, "_", NUL.
    pool = [chr(c) for c in [*range(0, 0x3000, 7), *range(0x4E00, 0x4E40), 0x1D7CE, 0x20000, 0x5F, 0x2160, 0xBD, 0x661]]
    for _ in range(5000):
        text = "".join(r.choice(pool) for _ in range(r.randint(0, 12)))
        for excluded in ((), _UNSPACED_RANGES):
            assert speedups.mark_runs(text, excluded) == speedups.py_mark_runs(text, excluded)


@compiled
def test_fact_helpers_match_the_python_twins() -> None:
    r = random.Random(2)
    pool = [f"C{i}" for i in range(12)]
    for _ in range(300):
        tails_of = {c: tuple(t for t in r.sample(pool, r.randint(0, 3)) if t != c) for c in pool}
        relations = {(h, t): tuple(sorted(r.sample(["is_a", "part_of", "treats"], r.randint(1, 2))))
                     for h, ts in tails_of.items() for t in ts}
        names = {c: c.lower() for c in pool if r.random() < 0.8}
        concepts = [r.choice(pool) for _ in range(r.randint(0, 10))]
        tails = [tails_of[c] for c in concepts]
        infos = [(None, "", "", c, ts, "", struct.pack(f"{len(ts) + 1}q", hash(c), *map(hash, ts)))
                 for c, ts in zip(concepts, tails)]
        assert speedups.fact_heads(infos) == speedups.py_fact_heads(infos)
        cap = r.randint(1, 6)
        lo = r.randint(0, len(infos))
        hi = r.randint(lo, len(infos))
        assert speedups.window_facts(infos, lo, hi, names, tails_of, relations, cap) == \
            speedups.py_window_facts(infos, lo, hi, names, tails_of, relations, cap)


@compiled
def test_fact_line_matches_the_python_twin() -> None:
    for r, text, spans, infos in _random_documents(4, 200, 2):
        infos = [(*info, "C", (), info[1], b"") for info in infos]  # field 5: the fact builder's format
        lo = r.randint(0, len(spans))
        hi = r.randint(lo, len(spans))
        ws = spans[lo][0] if lo < hi else 0
        pool = ["C1", 'C"2', "C\\3", "C\u20284", "C%5"]
        names = {c: _rand_text(r, r.randint(1, 4)) for c in pool}
        labels = {"is_a": "is a", "part\"of": _rand_text(r, 3)}
        facts = [(r.choice(pool), r.choice(list(labels)), r.choice(pool)) for _ in range(r.randint(0, 4))]
        join = r.choice(["", " "])
        args = ('{"id":"d#1","lang":"en"', text[ws:], spans, infos, lo, hi, ws, facts, names, labels, join, '"zh"')
        line = speedups.fact_line(*args, {})
        assert line == speedups.py_fact_line(*args, {})
        rec = json.loads(line)
        assert len(rec["entities"]) == hi - lo + 2 * len(facts) and len(rec["relations"]) == len(facts)
        for rel, (h, lab, t) in zip(rec["relations"], facts):
            assert rec["text"][rel["start"]:rel["end"]] == labels[lab] and rel["rel"] == lab
            assert rec["text"][rec["entities"][rel["head"]]["start"]:rec["entities"][rel["head"]]["end"]] == names[h]
            assert rec["entities"][rel["tail"]]["concept"] == t
    with pytest.raises(KeyError, match="no name"):
        speedups.fact_line('{"id":"d","lang":"en"', "x", [], [], 0, 0, 0, [("C9", "is_a", "C1")], {"C1": "a"},
                           {"is_a": "b"}, " ", '"zh"', {})


@compiled
def test_compiled_loops_reject_bad_input_clearly() -> None:
    spans, infos = [(0, 2, 0)], [("x", '{"start":%d,"end":%d}', '{"start":%d,"end":%d}')]
    with pytest.raises(TypeError, match="neither a str nor None"):
        speedups.switch_entities("ab", spans, [(3, *infos[0][1:])], 1, 0, '{"id":1')
    with pytest.raises(TypeError, match="packed int64"):
        speedups.fact_heads([(None, "", "", "C", (), "", b"abc")])
    with pytest.raises(ValueError, match="does not start with"):
        speedups.switch_entities("ab", spans, [(None, '{"end":%d}', "")], 0, 0, '{"id":1')
    for switch in (speedups.switch_entities, speedups.py_switch_entities):  # no UTF-8 for a lone surrogate
        with pytest.raises(UnicodeEncodeError):
            switch("a\ud800b", spans, infos, 0, 0, '{"id":1')
    with pytest.raises(ValueError, match="cannot draw"):
        speedups.sample_indices(0, 2, 3)
    with pytest.raises(ValueError, match="outside the text"):
        speedups.unmark_spans("ab", [(0, 5, 0)], "\x00")


def _use_python_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entity, "switch_entities", speedups.py_switch_entities)
    monkeypatch.setattr(fact, "fact_heads", speedups.py_fact_heads)
    monkeypatch.setattr(fact, "fact_line", speedups.py_fact_line)
    monkeypatch.setattr(fact, "window_facts", speedups.py_window_facts)
    monkeypatch.setattr(matcher, "unmark_spans", speedups.py_unmark_spans)
    monkeypatch.setattr(matcher, "mark_runs", speedups.py_mark_runs)


@compiled
def test_whole_build_is_the_same_with_the_python_twins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from kbioxlm.corpus import build

    kb = KnowledgeBase(tmp_path / "kb.sqlite", create=True)
    words = ["fever", "cough", "rash", "renal failure", "x-ray", "50% burn", "IL-6", "covid 19"]
    zh = ["发热", "咳嗽", "皮疹", "肾衰竭", "X光", "百分之五十烧伤", "白介素6", "新冠"]
    cids = [f"C{i}" if i != 5 else "C%5" for i in range(len(words))]
    kb.add_concepts([(c, None, "t") for c in cids])
    kb.add_names([(c, "en", w, 1, "t") for c, w in zip(cids, words)] + [(c, "zh", z, 1, "t") for c, z in zip(cids, zh)])
    kb.add_relations([(cids[i], "is_a", cids[(i + 1) % len(cids)], "t") for i in range(len(cids))]
                     + [(cids[0], "may_treat", cids[2], "t")])
    kb.commit()
    kb.close()
    r = random.Random(3)
    docs = []
    for d in range(60):
        lang = "en" if d % 2 else "zh"
        pool = words if lang == "en" else zh
        sep = ". " if lang == "en" else "。"
        text = sep.join(" ".join(r.choice(pool) for _ in range(r.randint(1, 5))) for _ in range(r.randint(1, 4)))
        docs.append({"id": f"d{d}", "lang": lang, "text": text + ("ABC1" if d % 7 == 0 else "")})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")

    def run(tag: str) -> tuple[bytes, bytes]:
        build._KNOW = build._KNOW_KEY = None
        e, f = tmp_path / f"e.{tag}.jsonl", tmp_path / f"f.{tag}.jsonl"
        assert main(["corpus", "build", "--kb", str(tmp_path / "kb.sqlite"), "--input", str(inp), "--lang", "en",
                     "--target-lang", "zh", "--no-progress", "--entity-out", str(e), "--fact-out", str(f)]) == 0
        return e.read_bytes(), f.read_bytes()

    fast = run("compiled")
    assert "inner_loops=compiled" in capsys.readouterr().out
    _use_python_twins(monkeypatch)
    slow = run("python")
    build._KNOW = build._KNOW_KEY = None
    assert fast == slow
    assert fast[0].count(b'"switched":true') > 20 and fast[1].count(b'"rel"') > 10
