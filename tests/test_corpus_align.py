"""``kbioxlm corpus align``: alignment records (a concept's names in two languages, and mentions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kbioxlm.cli import main
from kbioxlm.kb.matcher import fold_case
from kbioxlm.kb.store import KnowledgeBase
from kbioxlm.schema import validate_align_record, validate_pretrain_record

WORDS = "fever cough asthma insulin aspirin kidney liver tumor anemia sepsis stroke rash".split()


def make_kb(path: Path, n: int = 30) -> dict[str, dict[str, list[str]]]:
    """A00..: EN preferred name + 0-11 synonyms (some differing only in case), ZH preferred name +
    one synonym for even ids; A05 has no ZH name, A07 no EN name. Returns {lang: {concept: all names}}."""
    names: dict[str, dict[str, list[str]]] = {"en": {}, "zh": {}}
    rows = []
    for i in range(n):
        cid = f"A{i:02d}"
        en = [f"{WORDS[i % 12]} type {i}"] + [f"syn {i} {w}" for w in reversed(WORDS[: i % 12])]
        zh = [f"中文名{i}"] + ([f"别名{i}"] if i % 2 == 0 else [])
        if i != 7:
            names["en"][cid] = en
            rows += [(cid, "en", t, int(j == 0), "t") for j, t in enumerate(en)]
        if i != 5:
            names["zh"][cid] = zh
            rows += [(cid, "zh", t, int(j == 0), "t") for j, t in enumerate(zh)]
    kb = KnowledgeBase(path, create=True)
    kb.add_concepts([(f"A{i:02d}", None, "t") for i in range(n)])
    kb.add_names(rows)
    kb.commit()
    kb.close()
    return names


def occurs(name: str, text: str, lang: str) -> bool:
    """``name`` (folded) occurs in ``text`` (folded) without cutting a word (in ZH: a Latin/digit run)."""
    word = str.isalnum if lang == "en" else (lambda c: c.isascii() and c.isalnum())
    name, text = fold_case(name), fold_case(text)
    i = text.find(name)
    while i >= 0:
        j = i + len(name)
        if not (i > 0 and word(text[i - 1]) and word(name[0])) and not (
            j < len(text) and word(text[j]) and word(name[-1])
        ):
            return True
        i = text.find(name, i + 1)
    return False


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def align(kb: Path, out: Path, *extra: str) -> int:
    return main(["corpus", "align", "--kb", str(kb), "--lang", "en", "--target-lang", "zh", "--out", str(out), *extra])


@pytest.fixture()
def kb_names(tmp_path: Path) -> tuple[Path, dict[str, dict[str, list[str]]]]:
    kb = tmp_path / "kb.sqlite"
    return kb, make_kb(kb)


def test_align_records_schema_names_and_order(tmp_path: Path, kb_names, capsys) -> None:
    kb, names = kb_names
    out = tmp_path / "a.jsonl"
    assert align(kb, out, "--seed", "3", "--max-names", "4") == 0
    summary = capsys.readouterr().out
    recs = read(out)
    both = sorted(c for c in names["en"] if c in names["zh"])
    assert f"records={len(both)}" in summary and "names[en]=" in summary and "names[zh]=" in summary
    assert sorted(r["id"] for r in recs) == both  # A05 (no ZH) and A07 (no EN) are left out
    # The order: numpy PCG64(seed) permutation of the sorted ids.
    perm = np.random.Generator(np.random.PCG64(3)).permutation(len(both))
    assert [r["id"] for r in recs] == [both[i] for i in perm]
    for line, rec in zip(out.read_text(encoding="utf-8").splitlines(), recs):
        validate_align_record(rec)
        validate_pretrain_record(rec)
        assert list(rec) == ["id", "task", "concept", "names"]
        assert line.startswith(f'{{"id":"{rec["id"]}","task":"align","concept":"{rec["id"]}","names":{{"en":[')
        cid = rec["id"]
        for lang in ("en", "zh"):
            got, allnames = rec["names"][lang], names[lang][cid]
            assert got[0] == allnames[0]  # the preferred name first
            assert got[1:] == sorted(allnames[1:])[:3]  # then the others sorted, at most --max-names in all
    assert max(len(r["names"]["en"]) for r in recs) == 4


def test_align_is_deterministic_per_seed(tmp_path: Path, kb_names) -> None:
    kb, _names = kb_names
    outs = {}
    for tag, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert align(kb, tmp_path / f"{tag}.jsonl", "--seed", seed) == 0
        outs[tag] = (tmp_path / f"{tag}.jsonl").read_bytes()
    assert outs["a"] == outs["b"] and outs["a"] != outs["c"]
    assert sorted(outs["a"].splitlines()) == sorted(outs["c"].splitlines())  # same records, other order


def _entity_records(tmp_path: Path, kb: Path, names: dict[str, dict[str, list[str]]], tag: str, *extra: str) -> Path:
    docs = []
    for i in range(40):
        a, b = f"A{i % 30:02d}", f"A{(i * 7 + 3) % 30:02d}"
        if a in names["en"] and b in names["en"]:
            filler = " ".join(WORDS * 3)  # long enough that the context has to be cut
            docs.append(
                {
                    "id": f"e{i}",
                    "lang": "en",
                    "text": f"{filler} patients with {names['en'][a][0]} and "
                    f"{names['en'][b][-1].upper()} were seen. {filler}",
                }
            )
        if a in names["zh"]:
            docs.append({"id": f"z{i}", "lang": "zh", "text": f"患者{names['zh'][a][-1]}，复查。" * 2})
    inp = tmp_path / f"{tag}.docs.jsonl"
    inp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    out = tmp_path / f"{tag}.entity.jsonl"
    assert (
        main(
            [
                "corpus",
                "entity",
                "--kb",
                str(kb),
                "--input",
                str(inp),
                "--lang",
                "en",
                "--target-lang",
                "zh",
                "--out",
                str(out),
                "--no-progress",
                "--max-switches",
                "1",
                "--no-balance",
                *extra,
            ]
        )
        == 0
    )
    return out


def test_align_mentions(tmp_path: Path, kb_names) -> None:
    kb, names = kb_names
    ents = _entity_records(tmp_path, kb, names, "d")
    out = tmp_path / "a.jsonl"
    assert align(kb, out, "--entity-records", str(ents), "--max-mentions", "2") == 0
    recs = read(out)
    with_m = [r for r in recs if "mentions" in r]
    assert len(with_m) > 10
    ent_recs = read(ents)
    assert any(e["switched"] for r in ent_recs for e in r["entities"])  # switched spans are never mentions
    texts = [r["text"] for r in ent_recs]

    def whole_words(ctx: str) -> bool:  # the context occurs in a record without cutting a word
        for t in texts:
            i = t.find(ctx)
            while i >= 0:
                j = i + len(ctx)
                if (i == 0 or not (t[i - 1].isalnum() and ctx[0].isalnum())) and (
                    j == len(t) or not (t[j].isalnum() and ctx[-1].isalnum())
                ):
                    return True
                i = t.find(ctx, i + 1)
        return False

    for rec in with_m:
        validate_align_record(rec)
        assert list(rec) == ["id", "task", "concept", "names", "mentions"]
        per_lang: dict[str, int] = {}
        for m in rec["mentions"]:
            assert list(m) == ["lang", "text", "start", "end"]
            per_lang[m["lang"]] = per_lang.get(m["lang"], 0) + 1
            assert len(m["text"]) <= 200 and m["text"] == m["text"].strip()
            span = m["text"][m["start"] : m["end"]]
            assert fold_case(span) in {fold_case(n) for n in names[m["lang"]][rec["concept"]]}
            assert m["lang"] == "zh" or whole_words(m["text"]), m
            assert (
                not any("\u4e00" <= ch <= "\u9fff" for ch in m["text"]) if m["lang"] == "en" else True
            )  # no switched text
        assert all(v <= 2 for v in per_lang.values())
        assert [m["lang"] for m in rec["mentions"]] == sorted(m["lang"] for m in rec["mentions"])  # en first
    assert any(len(r["mentions"]) > 1 for r in with_m)
    assert {m["lang"] for r in with_m for m in r["mentions"]} == {"en", "zh"}
    # Same records in another order and split over two files: the same output.
    lines = ents.read_text(encoding="utf-8").splitlines()
    (tmp_path / "p1.jsonl").write_text("\n".join(lines[::-1][: len(lines) // 2]) + "\n", encoding="utf-8")
    (tmp_path / "p2.jsonl").write_text("\n".join(lines[::-1][len(lines) // 2 :]) + "\n", encoding="utf-8")
    out2 = tmp_path / "a2.jsonl"
    assert (
        align(kb, out2, "--entity-records", str(tmp_path / "p1.jsonl"), "--entity-records", str(tmp_path / "p2.jsonl"))
        == 0
    )
    assert out2.read_bytes() == out.read_bytes()
    # Another seed chooses other mentions (and order); --max-mentions 1 caps them.
    assert align(kb, tmp_path / "s1.jsonl", "--entity-records", str(ents), "--seed", "1") == 0
    ms0 = {(r["id"], json.dumps(r.get("mentions"))) for r in recs}
    ms1 = {(r["id"], json.dumps(r.get("mentions"))) for r in read(tmp_path / "s1.jsonl")}
    assert ms0 != ms1
    assert align(kb, tmp_path / "k1.jsonl", "--entity-records", str(ents), "--max-mentions", "1") == 0
    assert all(len(r.get("mentions", [])) <= 2 for r in read(tmp_path / "k1.jsonl"))


def test_align_exclusion(tmp_path: Path, kb_names, capsys) -> None:
    kb, names = kb_names
    held = ["A02", "A04", "A10"]
    (tmp_path / "held.txt").write_text("\n".join(held) + "\n", encoding="utf-8")
    # Entity records built without the exclusion: their mentions of held-out concepts must not leak.
    ents = _entity_records(tmp_path, kb, names, "d", "--max-switches", "0")
    out = tmp_path / "a.jsonl"
    assert align(kb, out, "--exclude-concepts", str(tmp_path / "held.txt"), "--entity-records", str(ents)) == 0
    assert "excluded_concepts=3" in capsys.readouterr().out
    held_names = {fold_case(n) for c in held for lang in ("en", "zh") for n in names[lang].get(c, [])}
    recs = read(out)
    assert recs and not {r["id"] for r in recs} & set(held)
    for rec in recs:
        assert not {fold_case(n) for ns in rec["names"].values() for n in ns} & held_names
        for m in rec.get("mentions", []):
            assert not any(occurs(n, m["text"], m["lang"]) for n in held_names), m
    assert any("mentions" in r for r in recs)
    # Without it they are there.
    assert align(kb, tmp_path / "all.jsonl", "--entity-records", str(ents)) == 0
    recs0 = read(tmp_path / "all.jsonl")
    assert set(held) <= {r["id"] for r in recs0}
    assert any(occurs(n, m["text"], m["lang"]) for r in recs0 for m in r.get("mentions", []) for n in held_names)


def test_align_errors(tmp_path: Path, kb_names, capsys) -> None:
    kb, _names = kb_names
    bad = tmp_path / "fact.jsonl"
    bad.write_text(
        json.dumps({"id": "x", "lang": "en", "text": "ab", "task": "fact", "entities": [], "relations": []}) + "\n"
    )
    capsys.readouterr()
    assert align(kb, tmp_path / "o.jsonl", "--entity-records", str(bad)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:1" in err and "entity record" in err
    assert (
        main(
            [
                "corpus",
                "align",
                "--kb",
                str(kb),
                "--lang",
                "en",
                "--target-lang",
                "fr",
                "--out",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 2
    )
    assert "'fr'" in capsys.readouterr().err
    assert align(kb, tmp_path / "o.jsonl", "--max-names", "0") == 2
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    "rec,reason",
    [
        ({"names": {"en": ["a"]}}, "at least 2 languages"),
        ({"names": {"en": ["a"], "zh": []}}, "non-empty list"),
        ({"names": {"en": ["a"], "zh": [""]}}, "empty or non-string"),
        ({"names": {"en": ["a"], "xx": ["b"]}}, "unknown language"),
        ({"names": ["a", "b"]}, "must be dict"),
        ({"mentions": [{"lang": "en", "text": "abc", "start": 2, "end": 5}]}, "invalid span"),
        ({"mentions": [{"lang": "en", "text": "", "start": 0, "end": 1}]}, "no text"),
        ({"concept": ""}, "empty concept"),
    ],
)
def test_validate_align_record_rejects(rec: dict, reason: str) -> None:
    good = {
        "id": "C1",
        "task": "align",
        "concept": "C1",
        "names": {"en": ["fever"], "zh": ["发热"]},
        "mentions": [{"lang": "en", "text": "a fever", "start": 2, "end": 7}],
    }
    validate_align_record(good)
    with pytest.raises(ValueError, match=reason):
        validate_align_record({**good, **rec})
