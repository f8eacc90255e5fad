"""Sentence splitting used by the fact window and passage cutting."""

from __future__ import annotations

from kbioxlm.corpus.sentences import split_sentences


def sents(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def test_decimals_and_abbreviations_do_not_break() -> None:
    text = "Take 3.5 mg daily, e.g. with food. Smith et al. found i.e. nothing vs. placebo (Fig. 2). Dr. Wong agreed."
    assert sents(text) == [
        "Take 3.5 mg daily, e.g. with food.",
        "Smith et al. found i.e. nothing vs. placebo (Fig. 2).",
        "Dr. Wong agreed.",
    ]


def test_terminators_quotes_and_newlines() -> None:
    text = 'He said "stop." Then left! Why?\nNew line without period'
    assert sents(text) == ['He said "stop."', "Then left!", "Why?", "New line without period"]


def test_chinese_punctuation() -> None:
    text = "患者发热。伴有咳嗽！是否需要住院？需要；立即……好的”之后"
    assert sents(text) == ["患者发热。", "伴有咳嗽！", "是否需要住院？", "需要；", "立即……", "好的”之后"]


def test_spans_are_offsets_into_the_text() -> None:
    text = "  First one.   Second one.  "
    spans = split_sentences(text)
    assert spans == [(2, 12), (15, 26)]
    assert all(not text[s].isspace() and not text[e - 1].isspace() for s, e in spans)


def test_fast_path_equals_the_rules() -> None:
    """Texts without a period or whitespace take a shortcut; it must split exactly like the rules."""
    import random

    from kbioxlm.corpus import sentences

    r = random.Random(0)
    pool = [*"发热咳嗽。！？；…”」）)\"'abc", "\n", " ", ".", "\u3000"]
    fast = 0
    for _ in range(3000):
        text = "".join(r.choice(pool) for _ in range(r.randint(0, 30)))
        fast += "." not in text and not any(c.isspace() for c in text)
        assert sentences.split_sentences(text) == sentences._split_by_rules(text), text
    assert fast > 100  # the shortcut was taken often enough to be tested
