"""ICD-10 importer: a small XML written here (BOM + CRLF like the WHO file) and the real files (shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from kbioxlm.cli import main
from kbioxlm.kb import KnowledgeBase
from kbioxlm.kb.icd10 import import_icd10

XML = """<icd_10_v2019>
  <item type="chapter"><name>I</name><description>Certain infectious and parasitic diseases</description>
    <item type="block"><name>A00-A09</name><description>Intestinal infectious diseases</description>
      <item type="category"><name>A00</name><description>Cholera</description>
        <item type="subcategory"><name>A00.0</name><description>Cholera due to Vibrio cholerae 01, biovar cholerae</description></item>
        <item type="subcategory"><name>A00.9</name><description>Cholera, unspecified</description></item>
      </item>
      <item type="category"><name>A01</name><description>Typhoid and paratyphoid fevers</description></item>
    </item>
    <item type="block"><name>A15-A19</name><description>Tuberculosis</description>
      <item type="block"><name>A15-A16</name><description>Respiratory tuberculosis</description>
        <item type="category"><name>A15</name><description>Respiratory tuberculosis, bacteriologically confirmed</description></item>
        <item type="category"><name>A16</name><description>Respiratory tuberculosis, not confirmed</description></item>
      </item>
      <item type="category"><name>A19</name><description>Miliary tuberculosis</description></item>
    </item>
  </item>
</icd_10_v2019>
"""
ZH_CATS = "code\tdisease\nA00\t霍乱\nA01+\t伤寒和副伤寒\nA90\t登革热\n"
ZH_BLOCKS = "code_lower_bound\tcode_upper_bound\tlevel\tcatalog\nA00\tA19\t1\t某些传染病\nA00\tA09\t2\t肠道传染病\nA90\tA99\t2\t病毒性出血热\n"


@pytest.fixture
def icd(tmp_path: Path) -> tuple[Path, Path, Path]:
    xml = tmp_path / "icd.xml"
    xml.write_bytes(b"\xef\xbb\xbf" + XML.replace("\n", "\r\n").encode("utf-8"))
    cats = tmp_path / "disease.csv"
    cats.write_text(ZH_CATS, encoding="utf-8")
    blocks = tmp_path / "disease_catalog.csv"
    blocks.write_text(ZH_BLOCKS, encoding="utf-8")
    return xml, cats, blocks


def test_icd10_nesting_and_chinese_join(icd: tuple[Path, Path, Path], tmp_path: Path) -> None:
    xml, cats, blocks = icd
    kb_path = tmp_path / "kb.sqlite"
    counts = import_icd10(kb_path, xml, cats, blocks)
    assert counts["zh_categories_unmatched"] == ["A90"] and counts["zh_blocks_unmatched"] == ["A90-A99"]
    with KnowledgeBase(kb_path) as kb:
        assert len(kb.concept_ids()) == counts["concepts"] == 11
        rels = set(kb.iter_relations())
        assert ("ICD10:A00.0", "is_a", "ICD10:A00") in rels
        assert ("ICD10:A00", "is_a", "ICD10:A00-A09") in rels
        assert ("ICD10:A15", "is_a", "ICD10:A15-A16") in rels
        assert ("ICD10:A15-A16", "is_a", "ICD10:A15-A19") in rels  # block inside block
        assert ("ICD10:A00-A09", "is_a", "ICD10:chapter:I") in rels
        assert len(rels) == 10  # every item but the chapter has exactly one parent
        assert kb.preferred_names("zh") == {
            "ICD10:A00": "霍乱",
            "ICD10:A01": "伤寒和副伤寒",  # dagger mark stripped
            "ICD10:A00-A09": "肠道传染病",
            "ICD10:chapter:I": "某些传染病",  # chapter matched on the code range it spans
        }
        assert kb.preferred_names("en")["ICD10:A00.9"] == "Cholera, unspecified"


def test_icd10_bad_inputs(icd: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xml, cats, blocks = icd
    kb_path = tmp_path / "kb.sqlite"
    with open(blocks, "a", encoding="utf-8") as fh:
        fh.write("A00\tA09\t2\n")
    args = [
        "kb",
        "import",
        "icd10",
        "--xml",
        str(xml),
        "--zh-categories",
        str(cats),
        "--zh-blocks",
        str(blocks),
        "--kb",
        str(kb_path),
    ]
    assert main(args) == 2
    assert f"{blocks}:5: expected 4 TAB-separated columns, got 3" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    bad = tmp_path / "bad.xml"
    bad.write_text("<icd_10_v2019>\n<item type='chapter'>\n</icd_10_v2019>\n", encoding="utf-8")
    assert main(["kb", "import", "icd10", "--xml", str(bad), "--kb", str(kb_path)]) == 2
    assert f"{bad}:3: malformed XML" in capsys.readouterr().err


@pytest.mark.shared
def test_real_icd10(tmp_path: Path) -> None:
    d = shared_path("data", "kb", "icd10")
    kb_path = tmp_path / "icd.sqlite"
    counts = import_icd10(kb_path, d / "icd_10_v2019.xml", d / "disease.csv", d / "disease_catalog.csv")
    # SOURCE.md: 22 chapters, 274 blocks, 2,050 categories, 10,196 subcategories
    assert counts["concepts"] == 22 + 274 + 2050 + 10196
    assert counts["relations"] == counts["concepts"] - 22
    assert sorted(counts["zh_categories_unmatched"]) == ["A90", "A91", "B59", "I84"]
    assert sorted(counts["zh_blocks_unmatched"]) == ["A90-A99", "K55-K63"]
    with KnowledgeBase(kb_path) as kb:
        zh = kb.preferred_names("zh")
        assert zh["ICD10:A00"] == "霍乱" and zh["ICD10:chapter:I"] == "某些传染病和寄生虫病"
