"""Readers: release CoNLL / JSON lines and the project's JSONL, errors with file:line, real counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import shared_path
from kbioxlm.errors import KbioxlmError
from kbioxlm.tasks.readers import detect_lang, read_ner, read_seqcls

CONLL_EN = (
    "-DOCSTART-\t412\n\nWe\tO\nreport\tO\nhepatic\tB-ADE\nfailure\tI-ADE\n\n-DOCSTART-\t7\n\nAspirin\tB-Drug\n.\tO\n"
)
CONLL_ZH = "-DOCSTART-\t1607\n\n自\tO\n发\tO\n结\tB-ADE\n膜\tI-ADE\n\n-DOCSTART-\t9\n\n药\tO\n疹\tO\nc\tO\na\tO\nu\tO\ns\tO\ne\tO\nd\tO\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_conll_ids_tokens_and_lang(tmp_path: Path) -> None:
    recs = read_ner(_write(tmp_path, "en.txt", CONLL_EN))
    assert [r["id"] for r in recs] == ["412", "7"]
    assert recs[0]["tokens"] == ["We", "report", "hepatic", "failure"]
    assert recs[0]["tags"] == ["O", "O", "B-ADE", "I-ADE"]
    assert {r["lang"] for r in recs} == {"en"}


def test_chinese_file_language_is_per_file(tmp_path: Path) -> None:
    # the second sentence is mostly Latin letters but belongs to a Chinese file
    recs = read_ner(_write(tmp_path, "zh.txt", CONLL_ZH))
    assert [r["lang"] for r in recs] == ["zh", "zh"]
    assert read_ner(_write(tmp_path, "x.txt", CONLL_ZH), lang="en")[0]["lang"] == "en"


def test_conll_malformed_line_reports_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "bad.txt", "-DOCSTART-\t1\n\nfoo\tO\nbar\tX-ADE\n")
    with pytest.raises(KbioxlmError, match=r"bad\.txt:4: bad tag 'X-ADE'"):
        read_ner(p)
    p = _write(tmp_path, "bad2.txt", "foo\tO\nlonely\n")
    with pytest.raises(KbioxlmError, match=r"bad2\.txt:2: expected"):
        read_ner(p)
    with pytest.raises(KbioxlmError, match="no such file"):
        read_ner(tmp_path / "missing.txt")


def test_plain_conll_without_docstart(tmp_path: Path) -> None:
    recs = read_ner(_write(tmp_path, "plain.conll", "a\tO\nb\tB-X\n\nc\tI-X\n"))
    assert [r["id"] for r in recs] == ["plain.conll:0", "plain.conll:1"]
    assert recs[1]["tags"] == ["I-X"]  # kept as written; repaired only for CRF training


def test_ner_jsonl(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "lang": "zh", "tokens": ["出", "血"], "tags": ["B-ADE", "I-ADE"]},
        {"id": "b", "tokens": ["aspirin"], "tags": ["B-Drug"]},
    ]
    p = _write(tmp_path, "n.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    recs = read_ner(p)
    assert [(r["id"], r["lang"]) for r in recs] == [("a", "zh"), ("b", "en")]
    p = _write(
        tmp_path, "bad.jsonl", json.dumps(lines[0]) + "\n" + json.dumps({"id": "c", "tokens": ["x"], "tags": []}) + "\n"
    )
    with pytest.raises(KbioxlmError, match=r"bad\.jsonl:2: 1 tokens but 0 tags"):
        read_ner(p)


def test_read_seqcls_release_and_project_formats(tmp_path: Path) -> None:
    gad = _write(
        tmp_path,
        "gad.json",
        '{"id": "0", "sentence": "@GENE$ in @DISEASE$", "label": "1"}\n'
        '{"id": "1", "sentence": "@GENE$ 与 @DISEASE$ 无关。", "label": "0"}\n',
    )
    recs = read_seqcls(gad, task="re")
    assert [(r["id"], r["label"]) for r in recs] == [("0", 1), ("1", 0)]
    assert recs[0]["text"] == "@GENE$ in @DISEASE$"
    hoc = _write(tmp_path, "hoc.json", json.dumps({"sentence": "abc .", "label": [0, 1, 0], "id": 123}) + "\n")
    recs = read_seqcls(hoc, task="dc")
    assert recs == [{"id": "123", "lang": "en", "text": "abc .", "label": [0, 1, 0]}]
    own = _write(tmp_path, "own.jsonl", json.dumps({"id": "x", "lang": "zh", "text": "文本", "label": 1}) + "\n")
    assert read_seqcls(own)[0]["lang"] == "zh"


def test_read_seqcls_errors(tmp_path: Path) -> None:
    p = _write(
        tmp_path, "b.json", '{"id": "0", "sentence": "x", "label": "1"}\n{"id": "1", "sentence": "y", "label": "yes"}\n'
    )
    with pytest.raises(KbioxlmError, match=r"b\.json:2: label"):
        read_seqcls(p)
    p = _write(
        tmp_path,
        "c.json",
        '{"id": "0", "sentence": "x", "label": [0, 1]}\n{"id": "1", "sentence": "y", "label": [1]}\n',
    )
    with pytest.raises(KbioxlmError, match=r"c\.json:2: label shape"):
        read_seqcls(p)
    p = _write(tmp_path, "d.json", '{"id": "0", "sentence": "x", "label": [0, 1]}\n')
    with pytest.raises(KbioxlmError, match=r"d\.json:1: task 're'"):
        read_seqcls(p, task="re")
    p = _write(tmp_path, "e.json", '{"id": "0", "sentence": "x", "label": 1\n')
    with pytest.raises(KbioxlmError, match=r"e\.json:1: malformed JSON"):
        read_seqcls(p)


def test_detect_lang() -> None:
    assert detect_lang("Metoclopramide caused dyskinesia.") == "en"
    assert detect_lang("服用甲氧氯普胺后出现运动障碍") == "zh"
    assert detect_lang("MPO 基因型 GG 与遗传性@GENE$ 患者的@DISEASE$ 相关。") == "zh"


# ------------------------------------------------------------------ real release files (SOURCE.md counts)

NER_COUNTS = {  # file: (lang, sentences, tokens, ADE, Drug), entities counted as seqeval default mode reads them
    "eng_to_zh/train.txt": ("en", 3845, 81959, 5203, 4481),
    "eng_to_zh/dev.txt": ("en", 427, 8755, 576, 486),
    "eng_to_zh/test.txt": ("zh", 421, 15034, 562, 487),
    "zh_to_eng/train.txt": ("zh", 3787, 139335, 5074, 4486),
    "zh_to_eng/dev.txt": ("zh", 419, 15114, 561, 483),
    "zh_to_eng/test.txt": ("en", 427, 8755, 576, 486),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(NER_COUNTS))
def test_release_ner_counts(name: str) -> None:
    from seqeval.metrics.sequence_labeling import get_entities

    lang, n, ntok, ade, drug = NER_COUNTS[name]
    recs = read_ner(shared_path("data", "kbioxlm-release", "ner", "ade", *name.split("/")))
    assert len(recs) == n and sum(len(r["tokens"]) for r in recs) == ntok
    assert {r["lang"] for r in recs} == {lang}
    ents = Counter(e[0] for r in recs for e in get_entities(r["tags"]))
    assert ents == {"ADE": ade, "Drug": drug}
    if name == "eng_to_zh/train.txt":
        # the caveat: 19 I-ADE tags open a span (17 of them right after B-Drug); B-ADE alone counts 5,184
        assert sum(t == "B-ADE" for r in recs for t in r["tags"]) == 5184


SEQCLS_COUNTS = {
    "GAD_hf_en_zh/train.json": ("en", 4261),
    "GAD_hf_en_zh/dev.json": ("en", 535),
    "GAD_hf_zh_en/train.json": ("zh", 4154),
    "GAD_hf_zh_en/dev.json": ("zh", 525),
    "GAD_hf_en_zh/test_en.json": ("en", 534),
    "GAD_hf_en_zh/test_zh.json": ("zh", 523),
    "HoC_hf_en_zh/train.json": ("en", 1295),
    "HoC_hf_en_zh/dev.json": ("en", 186),
    "HoC_hf_zh_en/train.json": ("zh", 1232),
    "HoC_hf_zh_en/dev.json": ("zh", 176),
    "HoC_hf_en_zh/test_en.json": ("en", 371),
    "HoC_hf_en_zh/test_zh.json": ("zh", 370),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SEQCLS_COUNTS))
def test_release_seqcls_counts(name: str) -> None:
    lang, n = SEQCLS_COUNTS[name]
    recs = read_seqcls(shared_path("data", "kbioxlm-release", "seqcls", *name.split("/")))
    assert len(recs) == n
    assert {r["lang"] for r in recs} == {lang}
    if name.startswith("HoC"):
        assert {len(r["label"]) for r in recs} == {10}
    else:
        assert {r["label"] for r in recs} == {0, 1}


def test_jsonl_is_told_by_name_or_first_character(tmp_path: Path) -> None:
    """One test for every reader that takes JSON lines or a line format in the same argument."""
    from kbioxlm.io import is_jsonl_file

    (tmp_path / "a.txt").write_text('\n  {"tokens": ["x"], "tags": ["O"]}\n', encoding="utf-8")
    (tmp_path / "b.tsv").write_text("id\tlang\tname\nC1\ten\tx\n", encoding="utf-8")
    (tmp_path / "c.JSONL").write_text("", encoding="utf-8")
    (tmp_path / "d.conll").write_text("", encoding="utf-8")
    assert is_jsonl_file(tmp_path / "a.txt") and is_jsonl_file(tmp_path / "c.JSONL")
    assert not is_jsonl_file(tmp_path / "b.tsv") and not is_jsonl_file(tmp_path / "d.conll")
    # the readers agree: a JSONL file named .txt is read as JSON lines
    assert read_ner(tmp_path / "a.txt", lang="en")[0]["tokens"] == ["x"]
