"""Parsers for messy chat answers, and mapping NER answers back to BIO tags."""

from __future__ import annotations

import pytest

from kbioxlm.llm.parsing import locate_entities, parse_entities, parse_labels, parse_yes_no
from kbioxlm.tasks.readers import HOC_LABELS

T = ["ADE", "Drug"]
WANT = [("aspirin", "Drug"), ("skin rash", "ADE")]


@pytest.mark.parametrize(
    "answer",
    [
        '```json\n[{"entity": "aspirin", "type": "Drug"}, {"entity": "skin rash", "type": "adverse effect"}]\n```',
        'Here you go:\n```\n{"Drug": ["aspirin"], "ADE": ["skin rash"]}\n```\nHope this helps.',
        "| # | Entity | Type |\n|---|--------|------|\n| 1 | aspirin | Drug |\n| 2 | skin rash | ADE |",
        "1. aspirin (Drug)\n2. skin rash (ADE)",
        "- **aspirin** - Drug\n- **skin rash** - ADE",
        "Entity: aspirin (Drug)\nEntity: skin rash (ADE)",
        "Drug: aspirin\nADE: skin rash",
        "aspirin: Drug\nskin rash: adverse drug event",
        "Entities found:\n* aspirin (drug)\n* skin rash (side effect)\nNo other entities.",
    ],
)
def test_parse_entities_messy_english(answer: str) -> None:
    assert sorted(parse_entities(answer, T)) == sorted(WANT)


@pytest.mark.parametrize(
    "answer",
    [
        "阿司匹林（药物）\n皮疹（不良反应）",
        "药物：阿司匹林\n不良反应：皮疹",
        "1、阿司匹林（Drug）\n2、皮疹（ADE）",
        "- 实体：阿司匹林，类型：药物\n- 实体：皮疹，类型：不良反应",
    ],
)
def test_parse_entities_chinese_punctuation(answer: str) -> None:
    assert sorted(parse_entities(answer, T)) == [("皮疹", "ADE"), ("阿司匹林", "Drug")]


def test_parse_entities_lists_none_and_unknown_types() -> None:
    assert sorted(parse_entities("Drug: aspirin, ibuprofen\nADE: rash", T)) == [
        ("aspirin", "Drug"),
        ("ibuprofen", "Drug"),
        ("rash", "ADE"),
    ]
    assert parse_entities("药物：阿司匹林、布洛芬", T) == [("阿司匹林", "Drug"), ("布洛芬", "Drug")]
    assert parse_entities("None", T) == [] and parse_entities("无", T) == []
    assert parse_entities("aspirin (Gene)", T) == []  # types outside the label set are dropped


@pytest.mark.parametrize(
    "answer, want",
    [
        ("Yes.", 1),
        ("**No**", 0),
        ("No, there is no association.", 0),
        ("yes - the gene is associated", 1),
        ("是", 1),
        ("否", 0),
        ("不是", 0),
        ("答案：是。", 1),
        ("无关", 0),
        ('{"answer": "yes"}', 1),
        ("maybe", None),
    ],
)
def test_parse_yes_no(answer: str, want: int | None) -> None:
    assert parse_yes_no(answer) == want


def _vec(*idx: int) -> list[int]:
    return [1 if j in idx else 0 for j in range(10)]


@pytest.mark.parametrize(
    "answer, want",
    [
        ("7. inducing angiogenesis\n9. sustaining proliferative signaling", _vec(6, 8)),
        ("- Activating invasion & metastasis\n- Tumor-promoting inflammation", _vec(0, 9)),
        ('```json\n["resisting cell death", "genomic instability and mutation"]\n```', _vec(7, 5)),
        ("3, 5", _vec(2, 4)),
        ("诱导血管生成、抵抗细胞死亡", _vec(6, 7)),
        ("The abstract discusses apoptosis (resisting cell death).", _vec(7)),
        ("none", _vec()),
        ("I cannot tell.", None),
    ],
)
def test_parse_hoc_labels(answer: str, want: list[int] | None) -> None:
    assert parse_labels(answer) == want
    assert len(HOC_LABELS) == 10


def test_locate_entities_all_occurrences_longest_first_no_overlap() -> None:
    toks = "Aspirin and aspirin caused skin rash ; painful rash .".split()
    tags = locate_entities(toks, "en", [("aspirin", "Drug"), ("rash", "ADE"), ("skin rash", "ADE"), ("pain", "ADE")])
    assert tags == ["B-Drug", "O", "B-Drug", "O", "B-ADE", "I-ADE", "O", "O", "B-ADE", "O"]
    zh = list("服用阿司匹林后出现皮疹，停用阿司匹林")
    ztags = locate_entities(zh, "zh", [("阿司匹林", "Drug"), ("皮疹", "ADE"), ("司匹", "ADE")])
    assert ztags[2:6] == ["B-Drug", "I-Drug", "I-Drug", "I-Drug"] and ztags[14:18] == ztags[2:6]
    assert ztags[9:11] == ["B-ADE", "I-ADE"] and ztags.count("B-ADE") == 1
    assert locate_entities(["a", "b"], "en", [("not there", "ADE")]) == ["O", "O"]
