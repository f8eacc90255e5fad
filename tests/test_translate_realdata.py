"""Real-data projection check on the release's ADE sentences (skipped without ../shared).

A test-double backend answers each English train sentence with the release's own Chinese
translation of it (same DOCSTART id), markers inserted around the gold Chinese entities: the i-th
entity of a type on the EN side ↔ the i-th entity of that type on the ZH side, numbered like the EN
markers. If marker parsing, QC and projection are right, the projected BIO tags reproduce the
released Chinese tags.
"""

from __future__ import annotations

from collections import defaultdict

from conftest import shared_path

from kbioxlm.chat.cache import Cache
from kbioxlm.conll import bio_spans, join_tokens
from kbioxlm.tasks.readers import read_ner
from kbioxlm.translate.markers import insert_markers, wrap_ner
from kbioxlm.translate.dataset import translate_dataset


class ReleaseZhBackend:
    """Returns the release's Chinese sentence, with EN-numbered markers, for each marked EN sentence."""

    name = "release-double"
    model = "ade-zh"
    code_switch = False

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def version(self, kind: str) -> str:
        return "v1"

    def translate_many(self, texts, kind, source_lang, target_lang, on_result):  # type: ignore[no-untyped-def]
        for i, t in enumerate(texts):
            on_result(i, self.answers.get(t, ""))


def _marked_zh(en: dict, zh: dict, target_lang: str = "zh") -> str:
    """Target sentence (``zh``) with markers numbered like the source (``en``) entities (type-wise order)."""
    en_spans = bio_spans(en["tags"])
    by_type: dict[str, list[int]] = defaultdict(list)
    for n, (_, _, typ) in enumerate(en_spans, start=1):
        by_type[typ].append(n)
    text, offsets = join_tokens(zh["tokens"], target_lang)
    seen: dict[str, int] = defaultdict(int)
    spans: dict[int, tuple[int, int]] = {}
    extra = 1000
    for s, e, typ in bio_spans(zh["tags"]):
        k = seen[typ]
        seen[typ] += 1
        if k < len(by_type[typ]):
            n = by_type[typ][k]
        else:  # more ZH than EN entities of this type: an extra number the QC must reject
            n, extra = extra, extra + 1
        spans[n] = (offsets[s][0], offsets[e - 1][1])
    return insert_markers(text, spans)


def test_release_ade_projection_reproduces_chinese_tags() -> None:
    en_path = shared_path("data", "kbioxlm-release", "ner", "ade", "eng_to_zh", "train.txt")
    zh_path = shared_path("data", "kbioxlm-release", "ner", "ade", "zh_to_eng", "train.txt")
    en = {r["id"]: r for r in read_ner(en_path, "en")}
    zh = {r["id"]: r for r in read_ner(zh_path, "zh")}
    answers: dict[str, str] = {}
    for rid, z in zh.items():
        answers.setdefault(wrap_ner(en[rid]["tokens"], en[rid]["tags"], "en").text, _marked_zh(en[rid], z))
    result = translate_dataset("ner", en_path, "en", "zh", ReleaseZhBackend(answers), Cache(None), progress=False)
    s = result.summary
    assert s["n_accepted"] + s["n_review"] == s["n_input"] == len(en)
    accepted = {r["id"]: r for r in result.accepted}
    same = sum(
        1
        for rid, z in zh.items()
        if rid in accepted and accepted[rid]["tokens"] == z["tokens"] and accepted[rid]["tags"] == z["tags"]
    )
    ratio = same / len(zh)
    print(
        f"\nADE EN->ZH projection: {same}/{len(zh)} = {ratio:.2%} of release ZH sentences reproduced; "
        f"review reasons {s['reasons']}"
    )
    assert ratio >= 0.95
    # The EN sentences without a Chinese version come back empty and are reviewed, not dropped.
    missing = set(en) - set(zh)
    review_ids = {r["id"] for r in result.review}
    assert missing <= review_ids


def test_release_ade_projection_reverse_direction_zh_to_en() -> None:
    """ZH → EN: spaced-language projection (word tokens, punctuation split) on the same pairs."""
    en_path = shared_path("data", "kbioxlm-release", "ner", "ade", "eng_to_zh", "train.txt")
    zh_path = shared_path("data", "kbioxlm-release", "ner", "ade", "zh_to_eng", "train.txt")
    en = {r["id"]: r for r in read_ner(en_path, "en")}
    zh = {r["id"]: r for r in read_ner(zh_path, "zh")}
    answers: dict[str, str] = {}
    for rid, z in zh.items():
        answers.setdefault(wrap_ner(z["tokens"], z["tags"], "zh").text, _marked_zh(z, en[rid], "en"))
    result = translate_dataset("ner", zh_path, "zh", "en", ReleaseZhBackend(answers), Cache(None), progress=False)
    assert result.summary["n_accepted"] + result.summary["n_review"] == len(zh)
    accepted = {r["id"]: r for r in result.accepted}
    same = sum(
        1
        for rid in zh
        if rid in accepted and accepted[rid]["tokens"] == en[rid]["tokens"] and accepted[rid]["tags"] == en[rid]["tags"]
    )
    ratio = same / len(zh)
    print(
        f"\nADE ZH->EN projection: {same}/{len(zh)} = {ratio:.2%} of release EN sentences reproduced; "
        f"review reasons {result.summary['reasons']}"
    )
    assert ratio >= 0.90
