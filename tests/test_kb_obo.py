"""OBO + Babelon importer: a small ontology written here, and the real HPO (shared, skipped if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from kbioxlm.cli import main
from kbioxlm.kb import KnowledgeBase
from kbioxlm.kb.obo import import_obo, parse_synonym

MINI_OBO = r"""format-version: 1.2
data-version: mini/releases/2025-01-01
default-namespace: mini_phenotype
ontology: mini

[Term]
id: MP:0000001
name: All

[Term]
id: MP:0000002
name: Abnormality of the heart
synonym: "Cardiac abnormality" EXACT layperson []
synonym: "Heart trouble" RELATED []
synonym: "Organ abnormality" BROAD []
xref: UMLS:C0018798
is_a: MP:0000001 ! All

[Term]
id: MP:0000003
name: Tachycardia
alt_id: MP:0000033
synonym: "Fast \"racing\" heart" EXACT []
xref: UMLS:C0039231
xref: SNOMEDCT_US:3424008
is_a: MP:0000002 ! Abnormality of the heart

[Term]
id: MP:0000004
name: Bradycardia
is_a: MP:0000002 ! Abnormality of the heart

[Term]
id: MP:0000005
name: obsolete Heart thing
is_obsolete: true

[Term]
id: MP:0000006
name: Sinus tachycardia
is_a: MP:0000003 ! Tachycardia
relationship: part_of MP:0000002 ! Abnormality of the heart
"""

BABELON = """source_language\ttranslation_language\tsubject_id\tpredicate_id\tsource_value\ttranslation_value\ttranslation_status
en\tzh\tMP:0000001\trdfs:label\tAll\t所有\tOFFICIAL
en\tzh\tMP:0000002\trdfs:label\tAbnormality of the heart\t心脏异常\tOFFICIAL
en\tzh\tMP:0000033\trdfs:label\tTachycardia\t心动过速\tOFFICIAL
en\tzh\tMP:0000003\toboInOwl:hasExactSynonym\tFast heart\t心跳过快\tOFFICIAL
en\tzh\tMP:0000004\trdfs:label\tBradycardia\t心动过缓\tCANDIDATE
en\tzh\tMP:0000005\trdfs:label\tobsolete Heart thing\t过时\tOFFICIAL
en\tzh\tMP:0000006\trdfs:label\tSinus tachycardia\tNA\tNOT_TRANSLATED
"""


@pytest.fixture
def mini(tmp_path: Path) -> tuple[Path, Path]:
    obo = tmp_path / "mini.obo"
    obo.write_text(MINI_OBO, encoding="utf-8")
    bab = tmp_path / "mini-zh.babelon.tsv"
    bab.write_text(BABELON, encoding="utf-8")
    return obo, bab


def test_parse_synonym() -> None:
    assert parse_synonym('"Fast \\"racing\\" heart" EXACT []') == ('Fast "racing" heart', "EXACT")
    assert parse_synonym('"Heart trouble" RELATED layperson []') == ("Heart trouble", "RELATED")
    assert parse_synonym("no quotes") is None


def test_obo_names_relations_xrefs(mini: tuple[Path, Path], tmp_path: Path) -> None:
    obo, bab = mini
    kb_path = tmp_path / "kb.sqlite"
    counts = import_obo(kb_path, obo, translations=[bab], drop=("MP:0000001",))
    assert counts["source"] == "obo:mini"
    with KnowledgeBase(kb_path) as kb:
        # root dropped, obsolete dropped
        assert kb.concept_ids() == {"MP:0000002", "MP:0000003", "MP:0000004", "MP:0000006"}
        en = {(t, c, p) for t, c, p in kb.iter_names("en")}
        assert ("Abnormality of the heart", "MP:0000002", 1) in en
        assert ("Cardiac abnormality", "MP:0000002", 0) in en and ("Heart trouble", "MP:0000002", 0) in en
        assert not any(t == "Organ abnormality" for t, _, _ in en)  # BROAD synonyms are other concepts
        assert ('Fast "racing" heart', "MP:0000003", 0) in en
        assert set(kb.iter_relations()) == {
            ("MP:0000003", "is_a", "MP:0000002"),
            ("MP:0000004", "is_a", "MP:0000002"),
            ("MP:0000006", "is_a", "MP:0000003"),
            ("MP:0000006", "part_of", "MP:0000002"),
        }
        assert kb.xrefs("UMLS") == {"MP:0000002": ["C0018798"], "MP:0000003": ["C0039231"]}
        assert kb.xrefs("SNOMEDCT_US") == {"MP:0000003": ["3424008"]}
        # Babelon: OFFICIAL only, joined on subject_id (alt_id resolved), label preferred, synonym not
        zh = {(t, c, p) for t, c, p in kb.iter_names("zh")}
        assert zh == {("心脏异常", "MP:0000002", 1), ("心动过速", "MP:0000003", 1), ("心跳过快", "MP:0000003", 0)}
        assert dict(kb.conn.execute("SELECT id, type FROM concept"))["MP:0000002"] == "mini_phenotype"
    assert counts["translations_unmatched"] == 2  # the dropped root and the obsolete term
    counts2 = import_obo(kb_path, obo, translations=[bab], drop=("MP:0000001",), accept_candidate=True)
    assert counts2["translated_names"] == counts["translated_names"] + 1
    with KnowledgeBase(kb_path) as kb:
        assert kb.preferred_names("zh")["MP:0000004"] == "心动过缓"


def test_obo_cli_reimport_idempotent_and_bad_babelon(mini: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    obo, bab = mini
    kb_path = tmp_path / "kb.sqlite"
    args = [
        "kb",
        "import",
        "obo",
        "--obo",
        str(obo),
        "--translations",
        str(bab),
        "--drop",
        "MP:0000001",
        "--kb",
        str(kb_path),
    ]
    assert main(args) == 0
    with KnowledgeBase(kb_path) as kb:
        before = (kb.stats(), sorted(kb.iter_names("zh")), kb.xrefs("UMLS"))
    assert main(args) == 0
    with KnowledgeBase(kb_path) as kb:
        assert (kb.stats(), sorted(kb.iter_names("zh")), kb.xrefs("UMLS")) == before
    capsys.readouterr()
    with open(bab, "a", encoding="utf-8") as fh:
        fh.write("en\tzh\tMP:0000004\trdfs:label\ttoo few columns\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{bab}:9: expected 7 TAB-separated columns" in err
    with KnowledgeBase(kb_path) as kb:
        assert kb.stats() == before[0]
    assert main(["kb", "import", "obo", "--obo", str(tmp_path / "missing.obo"), "--kb", str(kb_path)]) == 2
    assert "missing.obo: OBO file not found" in capsys.readouterr().err


@pytest.mark.shared
def test_real_hpo_with_chinese(tmp_path: Path) -> None:
    obo = shared_path("data", "kb", "hpo", "hp.obo")
    zh = shared_path("data", "kb", "hpo", "hp-zh.babelon.tsv")
    kb_path = tmp_path / "hpo.sqlite"
    import_obo(kb_path, obo, translations=[zh])
    with KnowledgeBase(kb_path) as kb:
        c = kb.conn
        bilingual = c.execute(
            "SELECT count(*) FROM concept WHERE id IN (SELECT concept_id FROM name WHERE lang='en') "
            "AND id IN (SELECT concept_id FROM name WHERE lang='zh')"
        ).fetchone()[0]
        is_a = c.execute("SELECT count(*) FROM relation WHERE rel='is_a'").fetchone()[0]
        assert bilingual >= 18_000
        assert is_a >= 20_000
        assert "HP:0000001" not in kb.concept_ids()
        assert not c.execute("SELECT 1 FROM relation WHERE tail_id='HP:0000001' OR head_id='HP:0000001'").fetchone()
        assert kb.preferred_names("zh")["HP:0000002"] == "身高异常"
        assert len(kb.xrefs("UMLS")) > 10_000
