"""Entity and fact builds on the real shared corpora with a KB built from the real HPO files.

The KB is made here straight from the Babelon TSV (EN label <-> official ZH label per HP id) and
the ``is_a`` lines of ``hp.obo``, without the OBO importer (another module's job), so this test
checks only the corpus stage. Skipped when ../shared is absent.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from conftest import shared_path
from kbioxlm.cli import main
from kbioxlm.kb.matcher import fold_case
from kbioxlm.kb.store import KnowledgeBase


@pytest.fixture(scope="module")
def hpo_kb(tmp_path_factory) -> tuple[Path, dict[str, dict[str, str]]]:
    tsv = shared_path("data", "kb", "hpo", "hp-zh.babelon.tsv")
    obo = shared_path("data", "kb", "hpo", "hp.obo")
    names: dict[str, dict[str, str]] = {"en": {}, "zh": {}}
    with open(tsv, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["predicate_id"] == "rdfs:label" and row["source_value"] and row["translation_value"]:
                names["en"][row["subject_id"]] = row["source_value"]
                names["zh"][row["subject_id"]] = row["translation_value"]
    rels = []
    term = None
    for line in obo.read_text(encoding="utf-8").splitlines():
        if line.startswith("id: HP:"):
            term = line[4:].strip()
        elif line.startswith("is_a: HP:") and term:
            rels.append((term, "is_a", line[6:16], "hpo"))
        elif line.startswith("[") and line != "[Term]":
            term = None
    path = tmp_path_factory.mktemp("hpo") / "kb.sqlite"
    kb = KnowledgeBase(path, create=True)
    kb.add_concepts((cid, "phenotype", "hpo") for cid in names["en"])
    kb.add_names((cid, lang, text, 1, "hpo") for lang in ("en", "zh") for cid, text in names[lang].items())
    kb.add_relations(rels)
    kb.set_relation_names([("is_a", "zh", "是一种"), ("is_a", "en", "is a")])
    kb.commit()
    kb.close()
    assert len(names["zh"]) > 18000 and len(rels) > 20000
    return path, names


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def _check_entities(recs: list[dict], names: dict[str, dict[str, str]], source: str) -> int:
    switched = 0
    for rec in recs:
        text = rec["text"]
        for e in rec["entities"]:
            span = text[e["start"] : e["end"]]
            if e["switched"]:
                switched += 1
                assert span == names[e["lang"]][e["concept"]]
            elif e["start"] < len(text.split("</s>")[0]):
                assert e["lang"] == source and fold_case(span) == fold_case(names[source][e["concept"]])
            else:
                assert span == names[e["lang"]][e["concept"]]
    return switched


def test_real_corpora_switch_both_ways_and_facts(tmp_path: Path, hpo_kb) -> None:
    kb, names = hpo_kb
    pqal = shared_path("data", "corpora", "en", "ori_pqal.json")
    cmeee = shared_path("data", "corpora", "zh", "cmeee_test.json")
    en_out, zh_out = tmp_path / "en.entity.jsonl", tmp_path / "zh.entity.jsonl"
    common = ["--kb", str(kb), "--no-progress"]
    assert (
        main(
            [
                "corpus",
                "entity",
                *common,
                "--input",
                str(pqal),
                "--input-format",
                "pubmedqa",
                "--lang",
                "en",
                "--target-lang",
                "zh",
                "--out",
                str(en_out),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "corpus",
                "entity",
                *common,
                "--input",
                str(cmeee),
                "--input-format",
                "cmeee",
                "--lang",
                "zh",
                "--target-lang",
                "en",
                "--out",
                str(zh_out),
            ]
        )
        == 0
    )
    en_recs, zh_recs = _read(en_out), _read(zh_out)
    assert _check_entities(en_recs, names, "en") > 100
    assert _check_entities(zh_recs, names, "zh") > 100
    assert any("高血压" in r["text"] for r in en_recs)  # "Hypertension" -> 高血压 (HP:0000822)
    assert {e["lang"] for r in zh_recs for e in r["entities"] if e["switched"]} == {"en"}

    for src, tgt, inp, fmt in (("en", "zh", pqal, "pubmedqa"), ("zh", "en", cmeee, "cmeee")):
        out = tmp_path / f"{src}.fact.jsonl"
        assert (
            main(
                [
                    "corpus",
                    "fact",
                    *common,
                    "--input",
                    str(inp),
                    "--input-format",
                    fmt,
                    "--lang",
                    src,
                    "--target-lang",
                    tgt,
                    "--out",
                    str(out),
                    "--window",
                    "3",
                ]
            )
            == 0
        )
        recs = _read(out)
        assert recs, f"no facts found in the {src} corpus"
        _check_entities(recs, names, src)
        rel_name = {"zh": "是一种", "en": "is a"}[tgt]
        for rec in recs:
            for r in rec["relations"]:
                assert rec["text"][r["start"] : r["end"]] == rel_name
                h, t = rec["entities"][r["head"]], rec["entities"][r["tail"]]
                assert h["lang"] == t["lang"] == tgt and h["end"] <= r["start"] and r["end"] <= t["start"]


def test_real_passages_from_release_pairs_and_paramed(tmp_path: Path) -> None:
    pairs = shared_path("data", "kbioxlm-release", "pretrain", "pair_data.json")
    out = tmp_path / "p.jsonl"
    assert main(["corpus", "passage", "--pairs", str(pairs), "--out", str(out), "--no-progress"]) == 0
    recs = _read(out)
    labels = {lab: sum(r["label"] == lab for r in recs) for lab in ("positive", "random", "context")}
    assert all(abs(n / len(recs) - 1 / 3) < 0.05 for n in labels.values()), labels
    cjk = re.compile(r"[\u4e00-\u9fff]")
    agree = 0
    for r in recs:
        assert len(r["text_a"]) <= 512 and len(r["text_b"]) <= 512
        for side in ("a", "b"):
            is_zh = len(cjk.findall(r[f"text_{side}"])) > 0.3 * len(re.findall(r"[^\W\d_]", r[f"text_{side}"]))
            agree += r[f"lang_{side}"] == ("zh" if is_zh else "en")
    # Some Chinese articles quote whole English passages, so a few passages look English.
    assert agree >= 0.97 * 2 * len(recs)
    en = shared_path("data", "parallel", "paramed", "nejm.dev.en")
    zh = shared_path("data", "parallel", "paramed", "nejm.dev.zh")
    out2 = tmp_path / "para.jsonl"
    assert (
        main(
            ["corpus", "passage", "--parallel-a", str(en), "--parallel-b", str(zh), "--out", str(out2), "--no-progress"]
        )
        == 0
    )
    recs2 = _read(out2)
    zh_texts = [r[f"text_{s}"] for r in recs2 for s in "ab" if r[f"lang_{s}"] == "zh"]
    assert zh_texts and not any(re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", t) for t in zh_texts)


# ---- held-out concepts on the real HPO KB ----------------------------------------------------
@pytest.fixture(scope="module")
def hpo_obo_kb(tmp_path_factory) -> Path:
    """The real HPO KB as `kbioxlm kb import obo` builds it (with synonyms: names shared by concepts)."""
    obo = shared_path("data", "kb", "hpo", "hp.obo")
    tsv = shared_path("data", "kb", "hpo", "hp-zh.babelon.tsv")
    path = tmp_path_factory.mktemp("hpo-obo") / "kb.sqlite"
    assert main(["kb", "import", "obo", "--obo", str(obo), "--translations", str(tsv), "--kb", str(path)]) == 0
    return path


def _occurs(name: str, text: str, lang: str) -> bool:
    """Folded ``name`` in folded ``text`` without cutting a word (ZH text: a Latin/digit run)."""
    from test_corpus_align import occurs

    return occurs(name, text, lang)


def test_real_holdout_never_leaks(tmp_path: Path, hpo_obo_kb: Path) -> None:
    from kbioxlm.corpus.readers import iter_documents

    kb = hpo_obo_kb
    held_file = tmp_path / "held.txt"
    assert (
        main(
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
                "en,zh",
                "--out",
                str(held_file),
            ]
        )
        == 0
    )
    held = set(held_file.read_text(encoding="utf-8").split())
    with KnowledgeBase(kb) as k:
        n_candidates = len(set(k.preferred_names("en")) & set(k.preferred_names("zh")))
        held_names = {fold_case(t) for rows in k.names_of(held).values() for _lang, t in rows}
    assert abs(len(held) - 0.1 * n_candidates) <= 1 and len(held_names) > len(held)
    pqal = shared_path("data", "corpora", "en", "ori_pqal.json")
    en_docs = tmp_path / "pqal300.jsonl"
    with open(en_docs, "w", encoding="utf-8") as f:  # the first 300 PubMedQA documents
        for i, (_line, doc) in enumerate(iter_documents(str(pqal), "pubmedqa", "en", "text", None)):
            if i == 300:
                break
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    cmeee = shared_path("data", "corpora", "zh", "cmeee_test.json")

    outs: dict[tuple[str, str], tuple[Path, Path]] = {}
    for src, tgt, inp, fmt in (("en", "zh", en_docs, "jsonl"), ("zh", "en", cmeee, "cmeee")):
        for tag, extra in (("ex", ["--exclude-concepts", str(held_file)]), ("all", [])):
            e, f = tmp_path / f"{src}.{tag}.entity.jsonl", tmp_path / f"{src}.{tag}.fact.jsonl"
            assert (
                main(
                    [
                        "corpus",
                        "build",
                        "--kb",
                        str(kb),
                        "--input",
                        str(inp),
                        "--input-format",
                        fmt,
                        "--lang",
                        src,
                        "--target-lang",
                        tgt,
                        "--entity-out",
                        str(e),
                        "--fact-out",
                        str(f),
                        "--window",
                        "3",
                        "--no-progress",
                        *extra,
                    ]
                )
                == 0
            )
            outs[(src, tag)] = (e, f)

    def scan(tag: str) -> dict[str, int]:
        n = {
            "entities": 0,
            "held_entities": 0,
            "held_switched_in": 0,
            "facts": 0,
            "held_facts": 0,
            "held_fact_names": 0,
        }
        for src in ("en", "zh"):
            e, f = outs[(src, tag)]
            for rec in _read(e) + _read(f):
                text = rec["text"]
                body_end = text.find("</s>") if rec["task"] == "fact" else len(text)
                for ent in rec["entities"]:
                    n["entities"] += 1
                    span = fold_case(text[ent["start"] : ent["end"]])
                    n["held_entities"] += ent["concept"] in held or span in held_names
                    n["held_switched_in"] += ent["switched"] and span in held_names
                    n["held_fact_names"] += ent["start"] > body_end and span in held_names
                for r in rec.get("relations", []):
                    n["facts"] += 1
                    h, t = rec["entities"][r["head"]], rec["entities"][r["tail"]]
                    n["held_facts"] += h["concept"] in held or t["concept"] in held
                    n["held_fact_names"] += fold_case(text[r["start"] : r["end"]]) in held_names
        return n

    ex, everything = scan("ex"), scan("all")
    assert ex["entities"] > 1000 and ex["facts"] > 20, ex
    assert ex["held_entities"] == ex["held_switched_in"] == ex["held_facts"] == ex["held_fact_names"] == 0, ex
    # The same builds without the exclusion do hold them (so the checks above can fail).
    assert everything["held_entities"] > 50 and everything["held_switched_in"] > 20 and everything["held_facts"] > 0, (
        everything
    )

    # corpus align, with mentions from entity records built with and without the exclusion.
    for tag in ("ex", "all"):
        out = tmp_path / f"align.{tag}.jsonl"
        ents = [str(outs[("en", t)][0]) for t in ("ex", "all")] + [str(outs[("zh", t)][0]) for t in ("ex", "all")]
        extra = ["--exclude-concepts", str(held_file)] if tag == "ex" else []
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
                    "zh",
                    "--out",
                    str(out),
                    "--seed",
                    "0",
                    "--entity-records",
                    *ents,
                    *extra,
                ]
            )
            == 0
        )
    recs = _read(tmp_path / "align.ex.jsonl")
    recs_all = _read(tmp_path / "align.all.jsonl")
    assert len(recs) > 15000 and sum("mentions" in r for r in recs) > 50
    n_mentions = 0
    for rec in recs:
        assert rec["id"] not in held and rec["concept"] not in held
        assert not {fold_case(n) for ns in rec["names"].values() for n in ns} & held_names
        for m in rec.get("mentions", []):
            n_mentions += 1
            ctx = fold_case(m["text"])
            assert ctx[m["start"] : m["end"]] not in held_names
            assert not any(_occurs(n, ctx, m["lang"]) for n in held_names if n in ctx), m
    assert n_mentions > 50
    assert len(held & {r["id"] for r in recs_all}) > 0.9 * len(held)
    leaked = sum(
        any(_occurs(n, fold_case(m["text"]), m["lang"]) for n in held_names if n in fold_case(m["text"]))
        for r in recs_all
        for m in r.get("mentions", [])
    )
    assert leaked > 0
