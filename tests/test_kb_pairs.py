"""``kb mine-pairs``: a small synthetic parallel pair, and the released ADE EN/ZH train files (shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from kbioxlm.cli import main
from kbioxlm.errors import KbioxlmError
from kbioxlm.kb import KnowledgeBase
from kbioxlm.kb.conll import Entity, entities, read_conll_docs
from kbioxlm.kb.pairs import count_pairs, join_split_punctuation, mine_pairs, pair_concept_id


def _conll(docs: list[tuple[str, list[tuple[str, str]]]]) -> str:
    parts = []
    for doc_id, toks in docs:
        parts.append(f"-DOCSTART-\t{doc_id}\n\n" + "".join(f"{t}\t{g}\n" for t, g in toks))
    return "\n".join(parts)


def _zh(text: str, tag: str | None) -> list[tuple[str, str]]:
    """One character per token, as in the released Chinese files."""
    if tag is None:
        return [(ch, "O") for ch in text]
    return [(ch, ("B-" if i == 0 else "I-") + tag) for i, ch in enumerate(text)]


EN = [
    ("1", [("methotrexate", "B-Drug"), ("caused", "O"), ("acute", "B-ADE"), ("hepatitis", "I-ADE")]),
    ("2", [("Methotrexate", "B-Drug"), ("-", "O"), ("induced", "O"), ("rash", "B-ADE")]),
    ("3", [("methotrexate", "B-Drug"), ("and", "O"), ("aspirin", "B-Drug"), ("caused", "O"), ("rash", "B-ADE")]),
    ("4", [("Stevens", "B-ADE"), ("-", "I-ADE"), ("Johnson", "I-ADE"), ("syndrome", "I-ADE"), ("after", "O"),
           ("lamotrigine", "B-Drug")]),
    ("5", [("Stevens", "B-ADE"), ("-", "I-ADE"), ("Johnson", "I-ADE"), ("syndrome", "I-ADE"), ("after", "O"),
           ("lamotrigine", "B-Drug")]),
    ("6", [("only", "O"), ("english", "O")]),
]  # fmt: skip
ZH = [
    ("1", _zh("甲氨蝶呤", "Drug") + _zh("引起", None) + _zh("急性肝炎", "ADE")),
    ("2", _zh("甲氨蝶呤", "Drug") + _zh("诱发", None) + _zh("皮疹", "ADE")),
    ("3", _zh("甲氨蝶呤", "Drug") + _zh("引起", None) + _zh("皮疹", "ADE")),  # 2 EN drugs, 1 ZH: Drug skipped
    ("4", _zh("拉莫三嗪", "Drug") + _zh("后", None) + _zh("史蒂文斯-约翰逊综合征", "ADE")),
    ("5", _zh("拉莫三嗪", "Drug") + _zh("后", None) + _zh("史蒂文斯-约翰逊综合征", "ADE")),
    ("7", _zh("只有中文", None)),
]


@pytest.fixture
def pair_files(tmp_path: Path) -> tuple[Path, Path]:
    en, zh = tmp_path / "en.txt", tmp_path / "zh.txt"
    en.write_text(_conll(EN), encoding="utf-8")
    zh.write_text(_conll(ZH), encoding="utf-8")
    return en, zh


def test_conll_reader_and_bio(pair_files: tuple[Path, Path]) -> None:
    docs = read_conll_docs(pair_files[1])
    assert list(docs) == ["1", "2", "3", "4", "5", "7"]
    ents = entities(docs["1"])
    assert [(e.type, e.text("zh")) for e in ents] == [("Drug", "甲氨蝶呤"), ("ADE", "急性肝炎")]
    # an I- tag that does not continue its type starts a new entity
    assert entities([("a", "B-Drug"), ("b", "I-ADE"), ("c", "I-ADE"), ("d", "O"), ("e", "I-Drug")]) == [
        Entity("Drug", ("a",)), Entity("ADE", ("b", "c")), Entity("Drug", ("e",))
    ]  # fmt: skip
    assert Entity("ADE", ("acute", "hepatitis")).text("en") == "acute hepatitis"


def test_alignment_counts_and_skips(pair_files: tuple[Path, Path]) -> None:
    counts, _, stats = count_pairs(*pair_files, "en", "zh")
    assert stats["docs_common"] == 5 and stats["docs_only_source"] == 1 and stats["docs_only_target"] == 1
    assert stats["groups_skipped_count_mismatch"] == 1  # doc 3, Drug: 2 vs 1
    assert counts[("Drug", "methotrexate", "甲氨蝶呤")] == 2  # docs 1 and 2, case-folded
    assert counts[("ADE", "rash", "皮疹")] == 2
    assert counts[("ADE", "stevens - johnson syndrome", "史蒂文斯-约翰逊综合征")] == 2
    assert ("Drug", "aspirin", "甲氨蝶呤") not in counts


def test_mine_pairs_writes_pairs_and_concepts(pair_files: tuple[Path, Path], tmp_path: Path) -> None:
    kb_path = tmp_path / "kb.sqlite"
    stats = mine_pairs(kb_path, *pair_files, "en", "zh", min_count=2)
    assert stats["pairs_kept"] == 4 and stats["kept_by_type"] == {"ADE": 2, "Drug": 2}
    with KnowledgeBase(kb_path) as kb:
        pairs = {(t, a, b, n) for _, t, _, a, _, b, n in kb.iter_pairs()}
        assert ("Drug", "methotrexate", "甲氨蝶呤", 2) in pairs  # tie between surface forms → fewer capitals
        assert ("ADE", "acute hepatitis", "急性肝炎", 1) not in pairs  # below min-count
        cid = pair_concept_id("Drug", "en", "methotrexate")
        assert cid.startswith("pair:Drug:")
        assert dict(kb.conn.execute("SELECT id, type FROM concept"))[cid] == "Drug"
        assert kb.preferred_names("zh")[cid] == "甲氨蝶呤"
        sjs = pair_concept_id("ADE", "en", "stevens - johnson syndrome")
        en_names = {t for t, c, _ in kb.iter_names("en") if c == sjs}
        assert en_names == {"Stevens - Johnson syndrome", "Stevens-Johnson syndrome"}  # + detokenized variant
    # deterministic: same inputs → same KB content, whatever min-count keeps
    stats1 = mine_pairs(kb_path, *pair_files, "en", "zh", min_count=1)
    with KnowledgeBase(kb_path) as kb:
        assert stats1["pairs_kept"] == 5 and cid in kb.concept_ids()
        assert len(kb.concept_ids()) == stats1["concepts"]  # re-import replaced the first one


def test_detokenize() -> None:
    assert join_split_punctuation("5 - fluorouracil ( 5 - FU )") == "5-fluorouracil (5-FU)"
    assert join_split_punctuation("TMP / SMX") == "TMP/SMX"


def test_bad_conll(tmp_path: Path, pair_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART-\t1\n\nword\tB-Drug\nword\tX-Drug\n", encoding="utf-8")
    kb_path = tmp_path / "kb.sqlite"
    args = ["kb", "mine-pairs", "--source", str(pair_files[0]), "--target", str(bad), "--source-lang", "en",
            "--target-lang", "zh", "--kb", str(kb_path)]  # fmt: skip
    assert main(args) == 2
    assert f"{bad}:4: bad tag 'X-Drug'" in capsys.readouterr().err
    bad.write_text("-DOCSTART-\t1\n\nword\tO\n\n-DOCSTART-\t1\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"bad\.txt:5: duplicate document id '1'"):
        read_conll_docs(bad)
    other = tmp_path / "other.txt"
    other.write_text("-DOCSTART-\t99\n\nword\tO\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match="no document id in common"):
        mine_pairs(kb_path, pair_files[0], other, "en", "zh")


@pytest.mark.shared
def test_real_ade_pairs(tmp_path: Path) -> None:
    en = shared_path("data", "kbioxlm-release", "ner", "ade", "eng_to_zh", "train.txt")
    zh = shared_path("data", "kbioxlm-release", "ner", "ade", "zh_to_eng", "train.txt")
    kb_path = tmp_path / "ade.sqlite"
    stats = mine_pairs(kb_path, en, zh, "en", "zh", min_count=2)
    assert stats["docs_common"] == 3787  # the ZH train set covers 3,787 of the EN documents (SOURCE.md)
    assert stats["kept_by_type"]["Drug"] > 300 and stats["kept_by_type"]["ADE"] > 300
    with KnowledgeBase(kb_path) as kb:
        pairs = {(t, a, b) for _, t, _, a, _, b, _ in kb.iter_pairs()}
        zh_names = {t for t, _, _ in kb.iter_names("zh")}
    assert ("Drug", "methotrexate", "甲氨蝶呤") in pairs
    assert all(" " not in t for t in zh_names if all("\u4e00" <= ch <= "\u9fff" for ch in t.replace(" ", "")))
