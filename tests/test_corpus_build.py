"""Entity, fact and passage builders: semantics, spans, determinism, balance, errors, kill-midway."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kbioxlm.cli import main
from kbioxlm.kb.matcher import fold_case
from kbioxlm.kb.store import KnowledgeBase
from kbioxlm.schema import PASSAGE_LABELS, validate_entity_record, validate_fact_record, validate_passage_record

EN_WORDS = "fever cough asthma insulin aspirin kidney liver tumor anemia sepsis stroke rash".split()
ZH_CHARS = "发热咳嗽哮喘胰岛素阿司匹林肾脏肝肿瘤贫血败症中风皮疹"


def make_kb(path: Path, n: int = 40, with_zh: bool = True) -> dict[str, dict[str, str]]:
    """Concepts C00..: EN names of 1-2 words, ZH names of 2-4 characters; every 5th has no ZH name;
    is_a / treats relations between neighbours. Returns {lang: {concept: preferred name}}."""
    r = random.Random(7)
    names: dict[str, dict[str, str]] = {"en": {}, "zh": {}}
    rows = []
    seen: set[str] = set()
    for i in range(n):
        cid = f"C{i:02d}"
        while True:
            en = " ".join(r.sample(EN_WORDS, r.randint(1, 2)))
            zh = "".join(r.sample(ZH_CHARS, r.randint(2, 4)))
            if en not in seen and zh not in seen:
                seen.update((en, zh))
                break
        names["en"][cid] = en
        rows.append((cid, "en", en, 1, "t"))
        rows.append((cid, "en", en.upper(), 0, "t"))  # a synonym differing in case
        if with_zh and i % 5 != 4:
            names["zh"][cid] = zh
            rows.append((cid, "zh", zh, 1, "t"))
    rels = [(f"C{i:02d}", "is_a" if i % 2 else "may_treat", f"C{(i + 1) % n:02d}", "t") for i in range(n)]
    kb = KnowledgeBase(path, create=True)
    kb.add_concepts([(f"C{i:02d}", None, "t") for i in range(n)])
    kb.add_names(rows)
    kb.add_relations(rels)
    kb.set_relation_names([("is_a", "zh", "是一种"), ("is_a", "en", "is a")])
    kb.commit()
    kb.close()
    return names


def make_docs(path: Path, names: dict[str, dict[str, str]], n_docs: int, langs=("en",), seed: int = 0) -> None:
    r = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for d in range(n_docs):
            lang = langs[d % len(langs)]
            pool = list(names[lang].values())
            sents = []
            for _ in range(r.randint(1, 4)):
                a, b = r.sample(pool, 2)
                sents.append(f"The {a} and the {b} were seen." if lang == "en" else f"患者{a}和{b}。")
            f.write(json.dumps({"id": f"doc{d}", "lang": lang, "text": " ".join(sents)}, ensure_ascii=False) + "\n")


@pytest.fixture()
def kb_names(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    kb = tmp_path / "kb.sqlite"
    return kb, make_kb(kb)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def entity_cmd(kb: Path, inp: Path, out: Path, *extra: str) -> int:
    return main(
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
            *extra,
        ]
    )


# ---- entity -----------------------------------------------------------------------------------
def test_entity_spans_switches_and_schema(tmp_path: Path, kb_names) -> None:
    kb, names = kb_names
    make_docs(tmp_path / "in.jsonl", names, 30)
    assert entity_cmd(kb, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--max-switches", "3") == 0
    recs = read(tmp_path / "out.jsonl")
    assert len(recs) == 30
    n_sw = n_kept = 0
    for rec in recs:
        validate_entity_record(rec)
        assert rec["task"] == "entity" and rec["lang"] == "en"
        assert sum(e["switched"] for e in rec["entities"]) <= 3
        for e in rec["entities"]:
            span = rec["text"][e["start"] : e["end"]]
            if e["switched"]:
                n_sw += 1
                assert e["lang"] == "zh" and span == names["zh"][e["concept"]]
            else:
                n_kept += 1
                assert e["lang"] == "en" and fold_case(span) == names["en"][e["concept"]]
    assert n_sw > 20 and n_kept > 0
    # Concepts without a ZH name are never switched, but still recorded.
    no_zh = {c for c in names["en"] if c not in names["zh"]}
    ents = [e for r in recs for e in r["entities"]]
    assert any(e["concept"] in no_zh for e in ents)
    assert not any(e["concept"] in no_zh and e["switched"] for e in ents)


def test_entity_deterministic_across_workers_and_seed_matters(tmp_path: Path, kb_names) -> None:
    kb, names = kb_names
    make_docs(tmp_path / "in.jsonl", names, 300, langs=("en", "zh"))
    outs = {}
    for tag, extra in {"w1": [], "w2": ["--num-workers", "2"], "s1": ["--seed", "1"]}.items():
        assert entity_cmd(kb, tmp_path / "in.jsonl", tmp_path / f"{tag}.jsonl", "--max-switches", "2", *extra) == 0
        outs[tag] = (tmp_path / f"{tag}.jsonl").read_bytes()
    assert outs["w1"] == outs["w2"]
    assert outs["w1"] != outs["s1"]


def test_mixed_corpus_is_balanced(tmp_path: Path, kb_names, capsys) -> None:
    kb, names = kb_names
    # 3 EN documents for each ZH document: without balancing EN->ZH would dominate.
    make_docs(tmp_path / "in.jsonl", names, 80, langs=("en", "en", "en", "zh"))
    assert entity_cmd(kb, tmp_path / "in.jsonl", tmp_path / "bal.jsonl") == 0
    assert entity_cmd(kb, tmp_path / "in.jsonl", tmp_path / "raw.jsonl", "--no-balance") == 0

    def per_direction(path: Path) -> Counter:
        c: Counter = Counter()
        for rec in read(path):
            for e in rec["entities"]:
                if e["switched"]:
                    c[f"{rec['lang']}->{e['lang']}"] += 1
        return c

    bal, raw = per_direction(tmp_path / "bal.jsonl"), per_direction(tmp_path / "raw.jsonl")
    assert raw["en->zh"] > 2 * raw["zh->en"] > 0
    assert bal["en->zh"] == bal["zh->en"] == raw["zh->en"]
    assert f"en->zh={bal['en->zh']}" in capsys.readouterr().out
    # A cap per direction (to balance two separate monolingual runs).
    assert (
        entity_cmd(kb, tmp_path / "in.jsonl", tmp_path / "cap.jsonl", "--no-balance", "--max-total-switches", "7") == 0
    )
    cap = per_direction(tmp_path / "cap.jsonl")
    assert cap["en->zh"] == 7 and cap["zh->en"] == 7


# ---- fact -------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang,target", [("en", "zh"), ("zh", "en")])
def test_fact_records_spans_and_order(tmp_path: Path, kb_names, lang: str, target: str) -> None:
    kb, names = kb_names
    inp = tmp_path / "in.jsonl"
    # Sentences naming neighbours (which have relations) and also a pair without any relation.
    docs = []
    for i in range(0, 38, 2):
        a, b, z = f"C{i:02d}", f"C{i + 1:02d}", f"C{(i + 20) % 40:02d}"
        if a not in names[lang] or b not in names[lang] or z not in names[lang]:
            continue
        t = (
            f"{names['en'][a]} with {names['en'][b]}. Then {names['en'][z]} alone with {names['en'][a]}."
            if lang == "en"
            else f"{names['zh'][a]}与{names['zh'][b]}。{names['zh'][z]}与{names['zh'][a]}。"
        )
        docs.append({"id": f"d{i}", "lang": lang, "text": t})
    inp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    out = tmp_path / "fact.jsonl"
    rc = main(
        [
            "corpus",
            "fact",
            "--kb",
            str(kb),
            "--input",
            str(inp),
            "--lang",
            lang,
            "--target-lang",
            target,
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    recs = read(out)
    assert recs, "facts expected"
    rel_names = {
        ("is_a", "zh"): "是一种",
        ("is_a", "en"): "is a",
        ("may_treat", "zh"): "may treat",
        ("may_treat", "en"): "may treat",
    }
    for rec in recs:
        validate_fact_record(rec)
        text = rec["text"]
        body, *facts = text.split("</s>")
        assert facts and rec["id"].endswith("#0")  # only the first sentence holds related concepts
        for e in rec["entities"]:
            span = text[e["start"] : e["end"]]
            if e["start"] < len(body):
                assert e["lang"] == lang and fold_case(span) == names[lang][e["concept"]]
            else:
                assert e["lang"] == target and span == names[target][e["concept"]]
        for r in rec["relations"]:
            h, t = rec["entities"][r["head"]], rec["entities"][r["tail"]]
            assert text[r["start"] : r["end"]] == rel_names[(r["rel"], target)]
            assert h["start"] > len(body) and t["start"] >= r["end"] and r["start"] >= h["end"]
            assert int(h["concept"][1:]) + 1 == int(t["concept"][1:])  # the KB direction head -> tail
            sep = "" if target == "zh" else " "
            assert text[h["start"] : t["end"]] == sep.join(
                [names[target][h["concept"]], rel_names[(r["rel"], target)], names[target][t["concept"]]]
            )
    # Same input, other worker count: identical bytes.
    out2 = tmp_path / "fact2.jsonl"
    assert (
        main(
            [
                "corpus",
                "fact",
                "--kb",
                str(kb),
                "--input",
                str(inp),
                "--lang",
                lang,
                "--target-lang",
                target,
                "--out",
                str(out2),
                "--no-progress",
                "--num-workers",
                "2",
            ]
        )
        == 0
    )
    assert out.read_bytes() == out2.read_bytes()


def test_fact_lang_source(tmp_path: Path, kb_names) -> None:
    kb, names = kb_names
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        json.dumps({"id": 1, "lang": "en", "text": f"{names['en']['C01']} and {names['en']['C02']}."}) + "\n"
    )
    out = tmp_path / "f.jsonl"
    assert (
        main(
            [
                "corpus",
                "fact",
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
                "--fact-lang",
                "source",
                "--no-progress",
            ]
        )
        == 0
    )
    (rec,) = read(out)
    assert rec["text"].endswith(f"</s>{names['en']['C01']} is a {names['en']['C02']}")


# ---- passage ----------------------------------------------------------------------------------
def test_passage_labels_and_determinism(tmp_path: Path) -> None:
    r = random.Random(3)
    pairs = tmp_path / "pairs.jsonl"
    with open(pairs, "w", encoding="utf-8") as f:
        for i in range(40):
            en = " ".join(f"Sentence {j} of article {i} about {r.choice(EN_WORDS)}." for j in range(r.randint(3, 12)))
            zh = "".join(f"第{i}篇文章的第{j}句关于{r.choice(ZH_CHARS)}。" for j in range(r.randint(3, 12)))
            a, b = (en, zh) if i % 2 else (zh, en)  # either side may be Chinese
            f.write(json.dumps({"sent1": a, "sent2": b, "label": "link"}, ensure_ascii=False) + "\n")
    out = tmp_path / "p.jsonl"
    assert (
        main(["corpus", "passage", "--pairs", str(pairs), "--out", str(out), "--max-chars", "120", "--no-progress"])
        == 0
    )
    recs = read(out)
    labels = Counter(x["label"] for x in recs)
    assert set(labels) == set(PASSAGE_LABELS)
    for lab in PASSAGE_LABELS:
        assert abs(labels[lab] / len(recs) - 1 / 3) < 0.08, labels
    for x in recs:
        validate_passage_record(x)
        assert len(x["text_a"]) <= 120 and len(x["text_b"]) <= 120
        art = x["id"].rsplit(":", 1)[0]
        num = lambda t: t.split("article ")[1].split(" ")[0] if "article " in t else t.split("第")[1].split("篇")[0]  # noqa: E731
        if x["label"] == "context":
            assert x["lang_a"] == x["lang_b"] and num(x["text_a"]) == num(x["text_b"])
        else:
            assert {x["lang_a"], x["lang_b"]} == {"en", "zh"}
            same = num(x["text_a"]) == num(x["text_b"])
            assert same if x["label"] == "positive" else not same
        assert art
    out2 = tmp_path / "p2.jsonl"
    assert (
        main(
            [
                "corpus",
                "passage",
                "--pairs",
                str(pairs),
                "--out",
                str(out2),
                "--max-chars",
                "120",
                "--num-workers",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert out.read_bytes() == out2.read_bytes()


def test_passage_cross_lingual_context_pairs(tmp_path: Path) -> None:
    """`--context-lang cross`: every pair is EN-ZH, so the label cannot be read off the scripts;
    a context partner is the passage after the aligned one, in the other language."""
    a, b = tmp_path / "x.en", tmp_path / "x.zh"
    a.write_text("".join(f"the drug {i} works .\n" for i in range(40)), encoding="utf-8")
    b.write_text("".join(f"药物 {i} 有效 。\n" for i in range(40)), encoding="utf-8")
    out = tmp_path / "p.jsonl"
    assert (
        main(
            [
                "corpus",
                "passage",
                "--parallel-a",
                str(a),
                "--parallel-b",
                str(b),
                "--out",
                str(out),
                "--max-chars",
                "20",
                "--context-lang",
                "cross",
                "--no-progress",
            ]
        )
        == 0
    )
    recs = read(out)
    labels = Counter(x["label"] for x in recs)
    assert set(labels) == set(PASSAGE_LABELS) and min(labels.values()) / len(recs) > 0.25
    num = lambda t: int("".join(c for c in t if c.isdigit()))  # noqa: E731
    for x in recs:
        validate_passage_record(x)
        assert {x["lang_a"], x["lang_b"]} == {"en", "zh"}
        if x["label"] == "context":
            assert num(x["text_b"]) == num(x["text_a"]) + 1
        elif x["label"] == "positive":
            assert num(x["text_b"]) == num(x["text_a"])


def test_passage_parallel_lines_desegmented(tmp_path: Path) -> None:
    a, b = tmp_path / "x.en", tmp_path / "x.zh"
    a.write_text("".join(f"the drug @-@ {i} works .\n" for i in range(30)), encoding="utf-8")
    b.write_text("".join(f"药物 {i} 有效 。\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "p.jsonl"
    assert (
        main(
            [
                "corpus",
                "passage",
                "--parallel-a",
                str(a),
                "--parallel-b",
                str(b),
                "--out",
                str(out),
                "--max-chars",
                "60",
                "--no-progress",
            ]
        )
        == 0
    )
    recs = read(out)
    pos = [x for x in recs if x["label"] == "positive"]
    assert pos
    for x in pos:
        en, zh = (x["text_a"], x["text_b"]) if x["lang_a"] == "en" else (x["text_b"], x["text_a"])
        assert "@-@" not in en and "药物 " not in zh
        assert [int(t) for t in en.replace("drug-", "drug- ").split() if t.isdigit()] == [
            int(t) for t in zh.replace("药物", " ").replace("有效", " ").split() if t.isdigit()
        ]
    b.write_text("药物 有效 。\n", encoding="utf-8")
    assert (
        main(
            [
                "corpus",
                "passage",
                "--parallel-a",
                str(a),
                "--parallel-b",
                str(b),
                "--out",
                str(tmp_path / "q.jsonl"),
                "--no-progress",
            ]
        )
        == 2
    )


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line,reason",
    [
        ('{"id": "x", "text": "fever"', "malformed JSON"),
        ('{"id": "x", "lang": "en"}', "missing field 'text'"),
        ('{"id": "x", "lang": "en", "text": 5}', "must be str"),
        ('{"id": "x", "lang": "en", "text": "  "}', "empty text"),
        ('{"id": "x", "lang": "xx", "text": "fever"}', "unknown language"),
        ('{"id": "x", "lang": "fr", "text": "fever"}', "neither --lang"),
        ('{"id": [1], "lang": "en", "text": "fever"}', "'id' must be"),
    ],
)
def test_bad_documents_report_file_and_line(tmp_path: Path, kb_names, capsys, line: str, reason: str) -> None:
    kb, _ = kb_names
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "ok", "lang": "en", "text": "fever and cough"}\n\n' + line + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert entity_cmd(kb, inp, out) == 2
    err = capsys.readouterr().err
    assert f"{inp}:3:" in err and reason in err and err.count("\n") == 1
    assert not out.exists()
    # --skip-invalid: counted, reported, the good document still built.
    assert entity_cmd(kb, inp, out, "--skip-invalid") == 0
    captured = capsys.readouterr().out
    assert "skipped=1" in captured and f"{inp}:3" in captured
    assert [r["id"] for r in read(out)] == ["ok"]


def test_unreadable_input_and_kb_without_target_language(tmp_path: Path, capsys) -> None:
    kb = tmp_path / "kb.sqlite"
    make_kb(kb, with_zh=False)
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "text": "fever"}\n')
    assert entity_cmd(kb, inp, tmp_path / "o.jsonl") == 2
    assert "no names in language 'zh'" in capsys.readouterr().err
    assert entity_cmd(kb, tmp_path / "missing.jsonl", tmp_path / "o.jsonl") == 2
    assert "missing.jsonl" in capsys.readouterr().err
    good_kb = tmp_path / "good.sqlite"
    make_kb(good_kb)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "\xff\xfe"}\n')
    assert entity_cmd(good_kb, bad, tmp_path / "o.jsonl") == 2
    assert f"{bad}:2" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_other_input_formats(tmp_path: Path, kb_names, capsys) -> None:
    kb, names = kb_names
    en = list(names["en"].values())
    qa = {
        "111": {"CONTEXTS": [f"The {en[0]} rose.", f"Then {en[1]}."], "LONG_ANSWER": f"So {en[2]}."},
        "222": {"CONTEXTS": [f"Only {en[3]}."], "LONG_ANSWER": ""},
    }
    (tmp_path / "qa.json").write_text(json.dumps(qa, indent=4))
    (tmp_path / "list.json").write_text(json.dumps([{"text": f"{en[4]} here"}, {"text": f"{en[5]} there"}], indent=2))
    (tmp_path / "d.txt").write_text(f"q1,{en[6]}?\nanswer {en[7]}\n\n\nq2 {en[8]}\nanswer2\n")
    for fmt, f, n in (
        ("pubmedqa", "qa.json", 2),
        ("cmeee", "list.json", 2),
        ("dialogue", "d.txt", 2),
        ("lines", "d.txt", 3),
    ):
        out = tmp_path / f"{fmt}.jsonl"
        assert entity_cmd(kb, tmp_path / f, out, "--input-format", fmt) == 0
        recs = read(out)
        assert len(recs) == n, fmt
    assert [r["id"] for r in read(tmp_path / "pubmedqa.jsonl")] == ["111", "222"]
    assert read(tmp_path / "dialogue.jsonl")[0]["id"] == "d.txt:1"
    # A bad record in a whole-file JSON format is reported with its line.
    qa["222"]["CONTEXTS"] = "not a list"
    (tmp_path / "qa.json").write_text(json.dumps(qa, indent=4))
    text = (tmp_path / "qa.json").read_text()
    line = text[: text.index('"222"')].count("\n") + 1
    capsys.readouterr()
    assert entity_cmd(kb, tmp_path / "qa.json", tmp_path / "x.jsonl", "--input-format", "pubmedqa") == 2
    assert f"qa.json:{line}: record '222'" in capsys.readouterr().err


# ---- kill midway ------------------------------------------------------------------------------
def test_killed_build_leaves_no_output_and_rerun_completes(tmp_path: Path, kb_names) -> None:
    kb, names = kb_names
    inp = tmp_path / "in.jsonl"
    make_docs(inp, names, 20000)
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "kbioxlm",
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
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.jsonl.*.tmp")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.jsonl.*.tmp")), "the build should be writing its temporary file"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    # The rerun completes, removes the stale temporary, and equals an uninterrupted run.
    assert main(cmd[3:]) == 0
    assert not list(tmp_path.glob(".out.jsonl.*.tmp"))
    ref = tmp_path / "ref.jsonl"
    assert main([*cmd[3:-3], "--out", str(ref), "--no-progress"]) == 0
    assert out.read_bytes() == ref.read_bytes()
    assert len(read(out)) == 20000


def test_combined_build_equals_separate_builds(tmp_path: Path, kb_names, capsys) -> None:
    """`corpus build` matches each document once for both levels; its outputs are byte-identical
    to `corpus entity` and `corpus fact` run separately (balance pass and workers included)."""
    kb, names = kb_names
    inp = tmp_path / "in.jsonl"
    make_docs(inp, names, 400, langs=("en", "zh"), seed=3)
    common = [
        "--kb",
        str(kb),
        "--input",
        str(inp),
        "--lang",
        "en",
        "--target-lang",
        "zh",
        "--no-progress",
        "--seed",
        "5",
        "--max-switches",
        "2",
    ]
    fact_opts = ["--window", "2", "--max-facts", "3"]
    assert main(["corpus", "entity", *common[:-2], "--max-switches", "2", "--out", str(tmp_path / "e.jsonl")]) == 0
    assert main(["corpus", "fact", *common[:-2], *fact_opts, "--out", str(tmp_path / "f.jsonl")]) == 0
    for workers in ("1", "2"):
        assert (
            main(
                [
                    "corpus",
                    "build",
                    *common,
                    *fact_opts,
                    "--num-workers",
                    workers,
                    "--entity-out",
                    str(tmp_path / f"be{workers}.jsonl"),
                    "--fact-out",
                    str(tmp_path / f"bf{workers}.jsonl"),
                ]
            )
            == 0
        )
        assert (tmp_path / f"be{workers}.jsonl").read_bytes() == (tmp_path / "e.jsonl").read_bytes()
        assert (tmp_path / f"bf{workers}.jsonl").read_bytes() == (tmp_path / "f.jsonl").read_bytes()
    out = capsys.readouterr().out
    assert "corpus entity:" in out and "corpus fact:" in out
    assert read(tmp_path / "f.jsonl") and read(tmp_path / "e.jsonl")
    # One level only, and bad level / missing output / same file for both.
    assert (
        main(["corpus", "build", *common, *fact_opts, "--levels", "fact", "--fact-out", str(tmp_path / "only.jsonl")])
        == 0
    )
    assert (tmp_path / "only.jsonl").read_bytes() == (tmp_path / "f.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["corpus", "build", *common, "--levels", "entity,passage", "--entity-out", str(tmp_path / "x")]) == 2
    assert "passage" in capsys.readouterr().err
    assert main(["corpus", "build", *common, "--entity-out", str(tmp_path / "x")]) == 2
    assert "--fact-out" in capsys.readouterr().err
    assert (
        main(["corpus", "build", *common, "--entity-out", str(tmp_path / "x"), "--fact-out", str(tmp_path / "x")]) == 2
    )
    assert not (tmp_path / "x").exists()


def test_direct_record_lines_equal_generic_json(tmp_path: Path) -> None:
    """Entity and fact lines are written without building dicts: they must equal io.dumps of the
    record, with characters JSON escapes (quotes, backslashes, U+2028) in ids, concepts and names."""
    from kbioxlm.io import dumps

    kb = KnowledgeBase(tmp_path / "kb.sqlite", create=True)
    cids = ['C"1', "C\\2", "C\u20283", "C4"]
    kb.add_concepts([(c, None, "t") for c in cids])
    kb.add_names(
        [
            (cids[0], "en", "fever", 1, "t"),
            (cids[1], "en", "cough", 1, "t"),
            (cids[2], "en", "rash", 1, "t"),
            (cids[3], "en", "fever", 0, "t"),  # a name shared by two concepts
            (cids[0], "zh", '发"热', 1, "t"),
            (cids[1], "zh", "咳\\嗽", 1, "t"),
            (cids[3], "zh", "热", 1, "t"),
        ]
    )
    kb.add_relations([(cids[0], 'is"a', cids[1], "t"), (cids[1], "may_treat", cids[2], "t")])
    kb.commit()
    kb.close()
    inp = tmp_path / "in.jsonl"
    docs = [
        {"id": 'd"1\u2028', "text": "Fever and cough. Cough with rash, fever."},
        {"id": 7, "text": "rash and cough"},
        {"text": "nothing here"},
    ]
    inp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    assert (
        main(
            [
                "corpus",
                "build",
                "--kb",
                str(tmp_path / "kb.sqlite"),
                "--input",
                str(inp),
                "--lang",
                "en",
                "--target-lang",
                "zh",
                "--no-progress",
                "--entity-out",
                str(tmp_path / "e.jsonl"),
                "--fact-out",
                str(tmp_path / "f.jsonl"),
            ]
        )
        == 0
    )
    lines = [ln for f in ("e.jsonl", "f.jsonl") for ln in (tmp_path / f).read_text(encoding="utf-8").split("\n") if ln]
    assert len(lines) == 2 + 2
    for line in lines:
        rec = json.loads(line)
        assert dumps(rec) == line
        for e in rec["entities"]:
            assert e["concept"] in cids
    assert json.loads(lines[1])["id"] == 7


def test_passage_from_two_article_files(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with open(a, "w", encoding="utf-8") as fa, open(b, "w", encoding="utf-8") as fb:
        for i in range(12):
            fa.write(
                json.dumps({"id": f"art{i}", "text": " ".join(f"Article {i} sentence {j}." for j in range(8))}) + "\n"
            )
            fb.write(
                json.dumps(
                    {"id": f"art{11 - i}", "text": "".join(f"第{11 - i}篇第{j}句。" for j in range(8))},
                    ensure_ascii=False,
                )
                + "\n"
            )
    out = tmp_path / "p.jsonl"
    assert (
        main(
            [
                "corpus",
                "passage",
                "--articles-a",
                str(a),
                "--articles-b",
                str(b),
                "--out",
                str(out),
                "--max-chars",
                "60",
                "--no-progress",
            ]
        )
        == 0
    )
    recs = read(out)
    for x in recs:
        validate_passage_record(x)
        nums = [
            t.split("Article ")[1].split(" ")[0] if x[f"lang_{s}"] == "en" else t.split("第")[1].split("篇")[0]
            for s, t in (("a", x["text_a"]), ("b", x["text_b"]))
        ]
        assert (nums[0] == nums[1]) == (x["label"] in ("positive", "context"))
    assert set(Counter(x["label"] for x in recs)) == set(PASSAGE_LABELS)
    # An article without a partner is an error naming its line (or skipped with --skip-invalid).
    with open(a, "a", encoding="utf-8") as fa:
        fa.write(json.dumps({"id": "lonely", "text": "No partner."}) + "\n")
    assert (
        main(["corpus", "passage", "--articles-a", str(a), "--articles-b", str(b), "--out", str(out), "--no-progress"])
        == 2
    )
    assert f"{a}:13: id 'lonely' has no article" in capsys.readouterr().err


# ---- stop lists -------------------------------------------------------------------------------
def test_stop_list_default_and_repeated(tmp_path: Path, capsys) -> None:
    kb_path = tmp_path / "kb.sqlite"
    kb = KnowledgeBase(kb_path, create=True)
    rows = [
        ("S1", "en", "Severe", 1),
        ("S1", "zh", "重度", 1),
        ("S2", "en", "pain", 1),
        ("S2", "zh", "疼痛", 1),
        ("S3", "en", "fever", 1),
        ("S3", "zh", "发热", 1),
        ("S4", "en", "Left", 1),
        ("S4", "zh", "左侧", 1),
    ]
    kb.add_concepts([(c, None, "t") for c in ("S1", "S2", "S3", "S4")])
    kb.add_names([(*r, "t") for r in rows])
    kb.commit()
    kb.close()
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "d", "text": "Severe pain in the left arm, then severe fever."}) + "\n")

    def matched(*extra: str) -> list[str]:
        out = tmp_path / "out.jsonl"
        assert entity_cmd(kb_path, inp, out, "--max-switches", "0", *extra) == 0
        return [e["concept"] for r in read(out) for e in r["entities"]]

    plain = matched()
    assert plain == ["S1", "S2", "S4", "S1", "S3"]
    assert matched("--stop-list", "default") == ["S2", "S3"]  # 'severe', 'left' are generic
    extra = tmp_path / "extra.txt"
    extra.write_text("# comment lines are skipped\nfever\n", encoding="utf-8")
    assert matched("--stop-list", "default", "--stop-list", str(extra)) == ["S2"]
    assert matched("--stop-list", str(extra)) == ["S1", "S2", "S4", "S1"]
    # Not given: as before (the output of the run without the option).
    assert matched() == plain


def test_shipped_stop_list_is_clean() -> None:
    from importlib import resources

    text = resources.files("kbioxlm.resources").joinpath("generic_names_en.txt").read_text(encoding="utf-8")
    names = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    assert 30 <= len(names) <= 120 and len(set(names)) == len(names)
    assert all(n == fold_case(n) for n in names)
    assert {"severe", "mild", "left", "right", "mm", "normal"} <= set(names)
    assert not {"pain", "cancer", "fever", "asthma"} & set(names)  # real clinical terms are not generic
