"""``kbioxlm kb split`` (held-out concepts) and ``--exclude-concepts`` on the KB-derived corpus builders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbioxlm.cli import main
from kbioxlm.errors import KbioxlmError
from kbioxlm.kb.matcher import fold_case
from kbioxlm.kb.store import KnowledgeBase


def make_split_kb(path: Path, n: int = 200, reverse: bool = False) -> dict[str, set[str]]:
    """``n`` concepts K000..; every 4th has no ZH name, every 7th no EN name. Rows in reverse order
    with ``reverse`` (the split must not depend on it). Returns {lang: concepts with a name}."""
    have: dict[str, set[str]] = {"en": set(), "zh": set()}
    rows = []
    for i in range(n):
        cid = f"K{i:03d}"
        if i % 7 != 3:
            rows.append((cid, "en", f"term {i}", 1, "t"))
            rows.append((cid, "en", f"term {i} synonym", 0, "t"))
            have["en"].add(cid)
        if i % 4 != 1:
            rows.append((cid, "zh", f"术语{i}", 1, "t"))
            have["zh"].add(cid)
    concepts = [(f"K{i:03d}", None, "t") for i in range(n)]
    if reverse:
        rows.reverse()
        concepts.reverse()
    kb = KnowledgeBase(path, create=True)
    kb.add_concepts(concepts)
    kb.add_names(rows)
    kb.commit()
    kb.close()
    return have


def split(kb: Path, out: Path, *extra: str, fraction: str = "0.1", seed: str = "0") -> int:
    return main(
        [
            "kb",
            "split",
            "--kb",
            str(kb),
            "--holdout-fraction",
            fraction,
            "--seed",
            seed,
            "--langs",
            "en,zh",
            "--out",
            str(out),
            *extra,
        ]
    )


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_split_is_deterministic_fraction_and_candidates(tmp_path: Path, capsys) -> None:
    kb = tmp_path / "kb.sqlite"
    have = make_split_kb(kb)
    candidates = have["en"] & have["zh"]
    assert split(kb, tmp_path / "a.txt") == 0
    assert split(kb, tmp_path / "b.txt") == 0
    assert split(kb, tmp_path / "c.txt", seed="1") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and f"candidates={len(candidates)}" in out[0] and "held_out=" in out[0]
    a = lines(tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert a != lines(tmp_path / "c.txt")
    assert a == sorted(a) and len(set(a)) == len(a)
    assert len(a) == round(0.1 * len(candidates)) and f"held_out={len(a)}" in out[0]
    assert set(a) <= candidates  # only concepts with names in every language
    # Independent of the KB's row order.
    kb2 = tmp_path / "kb2.sqlite"
    make_split_kb(kb2, reverse=True)
    assert split(kb2, tmp_path / "r.txt") == 0
    assert lines(tmp_path / "r.txt") == a
    # A larger fraction holds out more; --max-concepts caps it.
    assert split(kb, tmp_path / "half.txt", fraction="0.5") == 0
    assert len(lines(tmp_path / "half.txt")) == round(0.5 * len(candidates))
    assert split(kb, tmp_path / "cap.txt", "--max-concepts", "5", fraction="0.5") == 0
    assert len(lines(tmp_path / "cap.txt")) == 5
    # One language only: concepts without a ZH name become candidates too.
    assert (
        main(
            [
                "kb",
                "split",
                "--kb",
                str(kb),
                "--holdout-fraction",
                "1",
                "--langs",
                "en",
                "--out",
                str(tmp_path / "en.txt"),
            ]
        )
        == 0
    )
    assert set(lines(tmp_path / "en.txt")) == have["en"]


def test_split_errors_are_one_line(tmp_path: Path, capsys) -> None:
    kb = tmp_path / "kb.sqlite"
    make_split_kb(kb, n=20)
    capsys.readouterr()
    rc = main(
        [
            "kb",
            "split",
            "--kb",
            str(kb),
            "--holdout-fraction",
            "0.1",
            "--seed",
            "0",
            "--langs",
            "en,fr",
            "--out",
            str(tmp_path / "x.txt"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "'fr'" in err
    assert not (tmp_path / "x.txt").exists()
    for fraction in ("0", "1.5", "nan"):
        assert split(kb, tmp_path / "x.txt", fraction=fraction) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--holdout-fraction" in err
    assert split(tmp_path / "missing.sqlite", tmp_path / "x.txt") == 2
    assert "knowledge base not found" in capsys.readouterr().err


# ---- --exclude-concepts -----------------------------------------------------------------------
# C1 "fever"/"pyrexia" is held out. C4 also has the name "pyrexia" (shared with C1): never matched.
# C5's ZH preferred name is C1's (发热): C5 is matched, but never switched and never in a ZH fact.
NAMES = [
    ("C1", "en", "fever", 1),
    ("C1", "en", "pyrexia", 0),
    ("C1", "zh", "发热", 1),
    ("C2", "en", "cough", 1),
    ("C2", "zh", "咳嗽", 1),
    ("C3", "en", "asthma", 1),
    ("C3", "zh", "哮喘", 1),
    ("C4", "en", "rash", 1),
    ("C4", "en", "pyrexia", 0),
    ("C4", "zh", "皮疹", 1),
    ("C5", "en", "sepsis", 1),
    ("C5", "zh", "发热", 1),
    ("C5", "zh", "败血症", 0),
    ("C6", "en", "anemia", 1),
    ("C6", "zh", "贫血", 1),
]
RELS = [("C1", "is_a", "C2"), ("C2", "is_a", "C3"), ("C5", "is_a", "C3"), ("C4", "is_a", "C3"), ("C6", "is_a", "C1")]
HELD_NAMES = {"fever", "pyrexia", "发热"}


@pytest.fixture()
def ex_kb(tmp_path: Path) -> Path:
    path = tmp_path / "kb.sqlite"
    kb = KnowledgeBase(path, create=True)
    kb.add_concepts([(c, None, "t") for c in sorted({r[0] for r in NAMES})])
    kb.add_names([(c, lg, t, p, "t") for c, lg, t, p in NAMES])
    kb.add_relations([(h, r, t, "t") for h, r, t in RELS])
    kb.set_relation_names([("is_a", "zh", "是一种"), ("is_a", "en", "is a")])
    kb.commit()
    kb.close()
    return path


def _docs(path: Path) -> None:
    docs = [
        {"id": "e1", "lang": "en", "text": "Fever with cough and asthma. Sepsis and asthma. Pyrexia with asthma."},
        {"id": "e2", "lang": "en", "text": "Anemia and fever. Cough with asthma. Rash and asthma."},
        {"id": "z1", "lang": "zh", "text": "发热伴咳嗽和哮喘。败血症与哮喘。皮疹与哮喘。"},
    ]
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def _build(kb: Path, inp: Path, tmp: Path, tag: str, *extra: str) -> tuple[list[dict], list[dict]]:
    e, f = tmp / f"{tag}.e.jsonl", tmp / f"{tag}.f.jsonl"
    assert (
        main(
            [
                "corpus",
                "build",
                "--kb",
                str(kb),
                "--input",
                str(inp),
                "--lang",
                "en",
                "--target-lang",
                "zh",
                "--entity-out",
                str(e),
                "--fact-out",
                str(f),
                "--no-progress",
                "--no-balance",
                *extra,
            ]
        )
        == 0
    )
    return _read(e), _read(f)


def test_exclude_concepts_strict_on_entity_and_fact(tmp_path: Path, ex_kb: Path, capsys) -> None:
    inp = tmp_path / "in.jsonl"
    _docs(inp)
    held = tmp_path / "held.txt"
    held.write_text("# held out\n\nC1\n", encoding="utf-8")
    ents, facts = _build(ex_kb, inp, tmp_path, "ex", "--exclude-concepts", str(held))
    assert "excluded_concepts=1" in capsys.readouterr().out
    seen = set()
    for rec in ents + facts:
        text = rec["text"]
        for e in rec["entities"]:
            span = text[e["start"] : e["end"]]
            seen.add(e["concept"])
            assert e["concept"] != "C1" and fold_case(span) not in HELD_NAMES, (rec["id"], span)
            if e["switched"] and e["lang"] == "zh":
                assert e["concept"] != "C5"  # its ZH preferred name is a held-out name (into EN it may)
    assert {"C2", "C3", "C4", "C5", "C6"} <= seen  # C4 ('rash'), but its name 'pyrexia' (also C1's) is never matched
    zh = next(r for r in ents if r["id"] == "z1")
    assert "发热" in zh["text"] and not any(zh["text"][e["start"] : e["end"]] == "发热" for e in zh["entities"])
    pairs = {
        (r["entities"][x["head"]]["concept"], r["entities"][x["tail"]]["concept"])
        for r in facts
        for x in r["relations"]
    }
    assert ("C2", "C3") in pairs and ("C4", "C3") in pairs
    assert not any("C1" in p for p in pairs)
    en_pairs = {
        (r["entities"][x["head"]]["concept"], r["entities"][x["tail"]]["concept"])
        for r in facts
        if r["lang"] == "en"
        for x in r["relations"]
    }
    assert (
        not any("C5" in p for p in en_pairs) and ("C5", "C3") in pairs
    )  # no ZH fact names C5 (its name 发热 is held out)
    for rec in facts:
        appended = rec["text"].split("</s>", 1)[1]
        assert not any(n in appended for n in HELD_NAMES)
    # Without the exclusion the same input does produce all of it (so the checks above can fail).
    ents0, facts0 = _build(ex_kb, inp, tmp_path, "all")
    concepts0 = {e["concept"] for r in ents0 + facts0 for e in r["entities"]}
    switched0 = {r["text"][e["start"] : e["end"]] for r in ents0 for e in r["entities"] if e["switched"]}
    pairs0 = {
        (r["entities"][x["head"]]["concept"], r["entities"][x["tail"]]["concept"])
        for r in facts0
        for x in r["relations"]
    }
    e1 = next(r for r in ents0 if r["id"] == "e1")
    assert sum(e["concept"] == "C1" for e in e1["entities"]) == 2  # 'Fever' and 'Pyrexia'
    assert "C1" in concepts0 and "发热" in switched0 and ("C1", "C2") in pairs0 and ("C5", "C3") in pairs0


def test_exclude_concepts_single_level_commands_equal_build_and_empty_list_changes_nothing(
    tmp_path: Path, ex_kb: Path, capsys
) -> None:
    inp = tmp_path / "in.jsonl"
    _docs(inp)
    held = tmp_path / "held.txt"
    held.write_text("C1\nNOPE:1\n", encoding="utf-8")
    ents_b = tmp_path / "ex.e.jsonl"
    _build(ex_kb, inp, tmp_path, "ex", "--exclude-concepts", str(held))
    err = capsys.readouterr().err
    assert "warning: 1 of 2 excluded concept ids" in err  # unknown ids: a warning, not an error
    common = [
        "--kb",
        str(ex_kb),
        "--input",
        str(inp),
        "--lang",
        "en",
        "--target-lang",
        "zh",
        "--no-progress",
        "--exclude-concepts",
        str(held),
    ]
    assert main(["corpus", "entity", *common, "--out", str(tmp_path / "e.jsonl"), "--no-balance"]) == 0
    assert main(["corpus", "fact", *common, "--out", str(tmp_path / "f.jsonl")]) == 0
    assert (tmp_path / "e.jsonl").read_bytes() == ents_b.read_bytes()
    assert (tmp_path / "f.jsonl").read_bytes() == (tmp_path / "ex.f.jsonl").read_bytes()
    # A list without ids (comments only) gives the outputs of no list at all.
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing held out\n", encoding="utf-8")
    _build(ex_kb, inp, tmp_path, "none")
    _build(ex_kb, inp, tmp_path, "empty", "--exclude-concepts", str(empty))
    for lv in ("e", "f"):
        assert (tmp_path / f"none.{lv}.jsonl").read_bytes() == (tmp_path / f"empty.{lv}.jsonl").read_bytes()
    capsys.readouterr()
    assert (
        main(["corpus", "entity", *common[:-1], str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x.jsonl")]) == 2
    )
    assert "missing.txt" in capsys.readouterr().err


def test_split_then_exclude_end_to_end(tmp_path: Path, capsys) -> None:
    kb = tmp_path / "kb.sqlite"
    make_split_kb(kb, n=100)
    assert split(kb, tmp_path / "held.txt", fraction="0.3") == 0
    held = set(lines(tmp_path / "held.txt"))
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        "".join(json.dumps({"id": i, "text": f"Seen term {i} and term {i + 1} synonym."}) + "\n" for i in range(100))
    )
    out = tmp_path / "e.jsonl"
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
                "--exclude-concepts",
                str(tmp_path / "held.txt"),
            ]
        )
        == 0
    )
    got = {e["concept"] for r in _read(out) for e in r["entities"]}
    assert got and not got & held
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
            ]
        )
        == 0
    )
    assert {e["concept"] for r in _read(out) for e in r["entities"]} & held


def test_matcher_exclude_names_fold_case_whatever_the_case_policy(tmp_path: Path) -> None:
    from kbioxlm.kb.matcher import Matcher

    names = [("Fever", "C1"), ("FEVER", "C2"), ("cough", "C3"), ("发热", "C4")]
    text = "Fever, FEVER and cough; 发热"
    for case in ("fold", "exact"):
        m = Matcher(names, "en", case=case, exclude_names=["fever", "发热"])
        assert [x.concept for x in m.find(text)] == ["C3"]
    assert [x.concept for x in Matcher(names, "en", case="exact").find(text)] == ["C1", "C2", "C3", "C4"]
    kb = tmp_path / "kb.sqlite"
    make_split_kb(kb, n=10)
    with KnowledgeBase(kb) as k:
        got = k.names_of(["K001", "K003", "NOPE"])
    assert got == {"K001": [("en", "term 1"), ("en", "term 1 synonym")], "K003": [("zh", "术语3")]}


def test_concept_lists_are_read_one_way(tmp_path: Path) -> None:
    """--exclude-concepts and the probe's --concepts share one reader: whole-line and trailing `#`
    comments and blank lines are ignored; the exclude list is sorted and unique, the probe keeps lines."""
    from kbioxlm.kb.split import concept_list_lines, read_concept_list

    f = tmp_path / "ids.txt"
    f.write_text("\ufeff# held out\nHP:2\n\nHP:1  # trailing comment\nHP:2\n", encoding="utf-8")
    assert concept_list_lines(f) == [(2, "HP:2"), (4, "HP:1"), (5, "HP:2")]
    assert read_concept_list(f) == ("HP:1", "HP:2")
    with pytest.raises(KbioxlmError, match=r"nope.txt: cannot read \(no such file\)"):
        read_concept_list(tmp_path / "nope.txt")
