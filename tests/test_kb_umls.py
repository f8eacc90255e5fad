"""UMLS RRF importer on the project's synthetic RRF set (tests/fixtures/umls)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kbioxlm.cli import main
from kbioxlm.errors import KbioxlmError
from kbioxlm.kb import KnowledgeBase
from kbioxlm.kb.umls import import_umls, load_translations

FIX = Path(__file__).parent / "fixtures" / "umls"
SOURCES = "MSH,RXNORM,SNOMEDCT_US,ZHTEST"


def _names(kb: KnowledgeBase, cid: str, lang: str) -> dict[str, int]:
    return dict(kb.conn.execute("SELECT text, is_preferred FROM name WHERE concept_id=? AND lang=?", (cid, lang)))


def _rrf_rows(name: str) -> list[list[str]]:
    return [line.split("|") for line in (FIX / name).read_text(encoding="utf-8").splitlines()]


def test_filters_suppression_and_preferred(tmp_path: Path) -> None:
    kb_path = tmp_path / "kb.sqlite"
    counts = import_umls(kb_path, FIX, languages="ENG,CHI", sources=SOURCES)
    conso = _rrf_rows("MRCONSO.RRF")
    expected_cuis = {
        r[0] for r in conso if r[16] not in {"O", "E", "Y"} and r[1] in {"ENG", "CHI"} and r[11] in SOURCES.split(",")
    }
    with KnowledgeBase(kb_path) as kb:
        ids = kb.concept_ids()
        assert ids == expected_cuis and counts["concepts"] == len(ids)
        # all rows of C0000019 are suppressed; C0000020 is French only; C0000021 only in LNC
        assert not {"C0000019", "C0000020", "C0000021"} & ids
        texts = {t for t, *_ in kb.iter_names("en")}
        assert "Diabetes type II obsolete" not in texts and "Diabetes type 2 editor-suppressed" not in texts
        assert "Non-insulin-dependent diabetes" in texts
        assert kb.languages() == ["en", "zh"]  # the SPA row is filtered out
        # the same string from a non-preferred atom (listed first) and the preferred atom → preferred
        assert _names(kb, "C0000001", "en") == {"Diabetes mellitus": 1, "DM": 0}
        assert _names(kb, "C0000003", "en") == {"metformin": 1, "Metformin": 0}
        assert kb.preferred_names("zh")["C0000001"] == "糖尿病"
        # MRSTY: the first semantic type listed wins
        types = dict(kb.conn.execute("SELECT id, type FROM concept"))
        assert types["C0000003"] == "Pharmacologic Substance" and types["C0000017"] == "Bacterium"


def test_relations_rela_rel_direction_and_drops(tmp_path: Path) -> None:
    kb_path = tmp_path / "kb.sqlite"
    import_umls(kb_path, FIX, languages="ENG,CHI", sources=SOURCES)
    with KnowledgeBase(kb_path) as kb:
        rels = set(kb.iter_relations())
        ids = kb.concept_ids()
    # RELA present → RELA (isa normalised to is_a); "CUI2 REL CUI1" → head = CUI2
    assert ("C0000002", "is_a", "C0000001") in rels
    assert ("C0000003", "may_treat", "C0000002") in rels
    assert ("C0000015", "has_causative_agent", "C0000017") in rels
    # no RELA → REL
    assert ("C0000007", "RO", "C0000009") in rels
    expected = set()
    for r in _rrf_rows("MRREL.RRF"):
        cui1, rel, cui2, rela, sab, sup = r[0], r[3], r[4], r[7], r[10], r[14]
        if sup in {"O", "E", "Y"} or sab not in SOURCES.split(",") or cui1 == cui2 or not {cui1, cui2} <= ids:
            continue
        label = rela or rel
        expected.add((cui2, "is_a" if label == "isa" else label, cui1))
    assert rels == expected
    assert ("C0000012", "may_treat", "C0000014") not in rels  # suppressed relation
    assert not any("C0000019" in (h, t) for h, _, t in rels)  # end not imported


def test_language_option_accepts_iso_and_no_source_filter(tmp_path: Path) -> None:
    kb_path = tmp_path / "kb.sqlite"
    import_umls(kb_path, FIX, languages="en,es,fr")
    with KnowledgeBase(kb_path) as kb:
        assert kb.languages() == ["en", "es", "fr"]
        assert "C0000021" in kb.concept_ids()  # LNC kept without --sources
        assert ("C0000001", "RO", "C0000021") in set(kb.iter_relations())
    with pytest.raises(KbioxlmError, match="unknown language 'XXX'"):
        import_umls(kb_path, FIX, languages="ENG,XXX")


def test_translations_by_cui_and_by_english_name(tmp_path: Path) -> None:
    kb_path = tmp_path / "kb.sqlite"
    c1 = import_umls(kb_path, FIX, languages="ENG", translations=FIX / "translations_cui.tsv")
    assert c1["translations_unmatched"] == 1  # C9999999
    with KnowledgeBase(kb_path) as kb:
        assert _names(kb, "C0000009", "zh") == {"血管性水肿": 1, "血管水肿": 0}
        assert kb.preferred_names("zh") == {"C0000008": "咳嗽", "C0000009": "血管性水肿"}
    # by English name (case-insensitive), into --translation-lang; same source: replaces the import
    c2 = import_umls(kb_path, FIX, languages="ENG", translations=FIX / "translations_en.tsv", translation_lang="zh")
    assert c2["translations_unmatched"] == 1
    with KnowledgeBase(kb_path) as kb:
        assert kb.preferred_names("zh") == {"C0000012": "阿司匹林", "C0000015": "肺炎", "C0000016": "肺"}


def test_translation_table_layouts(tmp_path: Path) -> None:
    f = tmp_path / "t.tsv"
    f.write_text("C1\tzh\t甲\nC2\tja\t乙\n", encoding="utf-8")  # no header: 3 columns → cui layout
    t = load_translations(f)
    assert t.by_cui == {"C1": [("zh", "甲")], "C2": [("ja", "乙")]}
    f.write_text("Fever\t发热\n", encoding="utf-8")
    assert load_translations(f, "zh").by_english == {"fever": ["发热"]}
    f.write_text("C1\tzh\t甲\nFever\t发热\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"t\.tsv:2: expected 3 columns"):
        load_translations(f)


def test_reimport_is_idempotent_and_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb_path = tmp_path / "kb.sqlite"
    args = ["kb", "import", "umls", "--rrf-dir", str(FIX), "--languages", "ENG,CHI", "--kb", str(kb_path)]
    assert main(args) == 0
    assert main(["kb", "stats", "--kb", str(kb_path), "--json"]) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["kb", "stats", "--kb", str(kb_path), "--json"]) == 0
    second = capsys.readouterr().out.strip()
    assert first == second
    doc = json.loads(second)
    assert list(doc) == ["concepts", "names", "relations"]
    with KnowledgeBase(kb_path) as kb:
        c = kb.conn
        assert doc["concepts"] == c.execute("SELECT count(*) FROM concept").fetchone()[0] > 0
        assert doc["names"] == {"en": c.execute("SELECT count(*) FROM name WHERE lang='en'").fetchone()[0],
                                "zh": c.execute("SELECT count(*) FROM name WHERE lang='zh'").fetchone()[0]}  # fmt: skip
        assert doc["relations"] == len(list(kb.iter_relations()))
        assert kb.relation_names("zh")["is_a"] == "是一种"  # loaded into every KB at import


def test_malformed_rrf_line_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rrf = tmp_path / "rrf"
    shutil.copytree(FIX, rrf)
    lines = (rrf / "MRCONSO.RRF").read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(4, "C0000099|ENG|P|only a few fields|\n")
    (rrf / "MRCONSO.RRF").write_text("".join(lines), encoding="utf-8")
    kb_path = tmp_path / "kb.sqlite"
    assert main(["kb", "import", "umls", "--rrf-dir", str(rrf), "--kb", str(kb_path)]) == 2
    err = capsys.readouterr().err
    assert f"{rrf / 'MRCONSO.RRF'}:5:" in err and len(err.strip().splitlines()) == 1
    assert not kb_path.exists()  # a failed import into a new KB leaves nothing behind
    assert main(["kb", "import", "umls", "--rrf-dir", str(rrf), "--kb", str(kb_path), "--skip-invalid"]) == 0
    assert "skipped=1" in capsys.readouterr().out
    assert main(["kb", "import", "umls", "--rrf-dir", str(tmp_path / "nope"), "--kb", str(kb_path)]) == 2
    assert "UMLS RRF directory not found" in capsys.readouterr().err


def test_failed_reimport_keeps_previous_content(tmp_path: Path) -> None:
    rrf = tmp_path / "rrf"
    shutil.copytree(FIX, rrf)
    kb_path = tmp_path / "kb.sqlite"
    import_umls(kb_path, rrf)
    with KnowledgeBase(kb_path) as kb:
        before = kb.stats()
    # a bad MRREL line makes the import fail after MRCONSO was already written in the transaction
    with open(rrf / "MRREL.RRF", "a", encoding="utf-8") as fh:
        fh.write("broken line\n")
    with pytest.raises(KbioxlmError, match=r"MRREL\.RRF:17:"):
        import_umls(kb_path, rrf)
    with KnowledgeBase(kb_path) as kb:
        assert kb.stats() == before
