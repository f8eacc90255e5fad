"""Generic TSV/JSONL importer, relation names, ``kb stats`` and bad-input errors through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbioxlm.cli import main
from kbioxlm.kb import KnowledgeBase
from kbioxlm.kb.importing import default_relation_names

CONCEPTS = """id\ttype\tlang\tname\tpreferred
D1\tDisease\ten\tasthma\t1
D1\tDisease\tzh\t哮喘\t1
D1\tDisease\ten\tbronchial asthma\t
C1\tChemical\ten\tsalbutamol\ttrue
C1\tChemical\tzh\t沙丁胺醇\tyes
"""
RELATIONS = "head\trel\ttail\nC1\tmay_treat\tD1\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_concepts_relations_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _write(tmp_path / "my.tsv", CONCEPTS)
    r = _write(tmp_path / "rels.tsv", RELATIONS)
    kb_path = tmp_path / "kb.sqlite"
    assert main(["kb", "import", "tsv", "--concepts", str(c), "--relations", str(r), "--kb", str(kb_path)]) == 0
    capsys.readouterr()
    assert main(["kb", "stats", "--kb", str(kb_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"concepts": 2, "names": {"en": 3, "zh": 2}, "relations": 1}
    assert main(["kb", "stats", "--kb", str(kb_path)]) == 0
    table = capsys.readouterr().out
    assert "tsv:my" in table and "concepts" in table
    with KnowledgeBase(kb_path) as kb:
        assert dict(kb.conn.execute("SELECT id, type FROM concept")) == {"D1": "Disease", "C1": "Chemical"}
        assert kb.preferred_names("en") == {"C1": "salbutamol", "D1": "asthma"}
        assert list(kb.iter_relations()) == [("C1", "may_treat", "D1")]


def test_jsonl_both_shapes(tmp_path: Path) -> None:
    c = _write(
        tmp_path / "c.jsonl",
        '{"id": "X1", "type": "Disease", "names": {"en": ["gout", "podagra"], "zh": ["痛风"]}}\n'
        '{"id": "X2", "type": "Chemical", "lang": "en", "name": "allopurinol", "preferred": true}\n',
    )
    r = _write(tmp_path / "r.jsonl", '{"head": "X2", "rel": "may_treat", "tail": "X1"}\n')
    kb_path = tmp_path / "kb.sqlite"
    assert main(["kb", "import", "tsv", "--concepts", str(c), "--relations", str(r), "--kb", str(kb_path)]) == 0
    with KnowledgeBase(kb_path) as kb:
        assert sorted(kb.iter_names("en")) == [("allopurinol", "X2", 1), ("gout", "X1", 1), ("podagra", "X1", 0)]
        assert kb.preferred_names("zh") == {"X1": "痛风"}
        assert list(kb.iter_relations()) == [("X2", "may_treat", "X1")]


def test_relation_names_default_and_user_override(tmp_path: Path) -> None:
    defaults = default_relation_names()
    rels = {r for r, _, _ in defaults}
    assert len(rels) >= 30 and ("is_a", "zh", "是一种") in defaults
    assert all({(r, "en"), (r, "zh")} <= {(x, lang) for x, lang, _ in defaults} for r in rels)
    kb_path = tmp_path / "kb.sqlite"
    names = _write(
        tmp_path / "names.tsv", "rel\tlang\ttext\nis_a\tzh\t属于\nmay_treat\tde\tkann behandeln\nis_a\tzh\t是\n"
    )
    assert main(["kb", "import", "tsv", "--relation-names", str(names), "--kb", str(kb_path)]) == 0
    c = _write(tmp_path / "c.tsv", CONCEPTS)
    assert main(["kb", "import", "tsv", "--concepts", str(c), "--kb", str(kb_path)]) == 0  # a later import...
    with KnowledgeBase(kb_path) as kb:
        assert kb.relation_names("zh")["is_a"] == "是"  # ...keeps the user's name; later rows win
        assert kb.relation_names("de") == {"may_treat": "kann behandeln"}
        assert kb.relation_names("en")["may_be_treated_by"] == "may be treated by"


@pytest.mark.parametrize(
    ("name", "text", "line", "reason"),
    [
        ("c.tsv", "id\ttype\tlang\tname\nD1\tDisease\ten\n", 2, "expected 4 or 5 TAB-separated columns, got 3"),
        ("c.tsv", "D1\tDisease\txx\tasthma\n", 1, "unknown language 'xx'"),
        ("c.tsv", "D1\tDisease\ten\tasthma\tmaybe\n", 1, "preferred must be"),
        ("c.jsonl", '{"id": "D1", "lang": "en", "name": "a"}\n{"id": "D2", "lang": "en"\n', 2, "malformed JSON"),
        ("c.jsonl", '{"id": "D1", "lang": "en", "name": ""}\n', 1, "name must be a non-empty string"),
    ],
)
def test_bad_concept_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, line: int,
                           reason: str) -> None:  # fmt: skip
    f = _write(tmp_path / name, text)
    kb_path = tmp_path / "kb.sqlite"
    assert main(["kb", "import", "tsv", "--concepts", str(f), "--kb", str(kb_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {f}:{line}: ") and reason in err and "\n" not in err
    assert not kb_path.exists()


def test_relation_to_unknown_concept_and_skip_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _write(tmp_path / "c.tsv", CONCEPTS)
    r = _write(tmp_path / "r.tsv", RELATIONS + "C1\tmay_treat\tNOPE\n")
    kb_path = tmp_path / "kb.sqlite"
    args = ["kb", "import", "tsv", "--concepts", str(c), "--relations", str(r), "--kb", str(kb_path)]
    assert main(args) == 2
    assert f"{r}:3: unknown concept id(s) NOPE" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    assert "skipped=1" in capsys.readouterr().out
    with KnowledgeBase(kb_path) as kb:
        assert kb.stats()["relations"] == 1


def test_missing_files_and_missing_kb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb_path = tmp_path / "kb.sqlite"
    assert main(["kb", "import", "tsv", "--concepts", str(tmp_path / "none.tsv"), "--kb", str(kb_path)]) == 2
    assert "none.tsv: concepts file not found" in capsys.readouterr().err
    assert main(["kb", "stats", "--kb", str(kb_path), "--json"]) == 2
    assert "knowledge base not found" in capsys.readouterr().err
