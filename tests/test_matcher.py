"""The KB matcher against a brute-force reference, and its individual policies."""

from __future__ import annotations

import random

import pytest

from kbioxlm.kb.matcher import Matcher, brute_force_matches, fold_case
from kbioxlm.kb.store import KnowledgeBase

ALPHABETS = {
    # Latin letters in two cases, digits, spaces and punctuation: exercises word boundaries,
    # punctuation-variant keys ("a-b" vs "a b") and case folding.
    "en": "abAB -.'1é_\x00",  # "_" is no word character (str.isalnum); a text's own NUL is no sentinel
    # CJK characters mixed with Latin letters/digits and Chinese punctuation.
    "zh": "甲乙丙丁aB1 。😀_",  # an astral character: offsets are code points
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_matches_brute_force_on_random_inputs(lang: str) -> None:
    alpha = ALPHABETS[lang]
    n_found = 0
    for trial in range(600):
        r = random.Random(trial)
        names = [
            ("".join(r.choice(alpha) for _ in range(r.randint(1, 4))), f"C{r.randint(0, 5)}")
            for _ in range(r.randint(1, 12))
        ]
        # Random characters with names planted in them, so that matches are frequent.
        text = "".join(r.choice(names)[0] if r.random() < 0.3 else r.choice(alpha) for _ in range(r.randint(0, 30)))
        case = r.choice(["fold", "exact"])
        min_len = r.randint(1, 3)
        stop = [names[0][0]] if r.random() < 0.2 else []
        got = Matcher(names, lang, case=case, min_length=min_len, stop_words=stop).find(text)
        want = brute_force_matches(text, names, lang, case, min_len, stop)
        assert got == want, (trial, text, names, case, min_len, stop)
        n_found += len(got)
    assert n_found > 500  # the random setup really produces matches


def test_word_boundaries_in_spaced_text() -> None:
    m = Matcher([("cat", "C1"), ("cat food", "C2"), ("-1", "C3")], "en")
    text = "concatenate cat food, cats, cat. IL-1"
    spans = [(text[x.start : x.end], x.concept) for x in m.find(text)]
    assert spans == [("cat food", "C2"), ("cat", "C1"), ("-1", "C3")]


def test_unspaced_matches_characters_but_not_inside_latin_words() -> None:
    m = Matcher([("SARS", "C1"), ("细胞", "C2"), ("高血压", "C3"), ("血压", "C4")], "zh")
    text = "对儿童SARST细胞与成人SARS相比，高血压"
    got = [(text[x.start : x.end], x.concept) for x in m.find(text)]
    assert got == [("细胞", "C2"), ("SARS", "C1"), ("高血压", "C3")]


def test_case_policy_and_offsets_survive_length_changing_lowercase() -> None:
    # "İ".lower() is two characters; folding must keep offsets into the original text.
    text = "İİ Aspirin and ASPIRIN"
    assert len(fold_case(text)) == len(text)
    folded = Matcher([("aspirin", "C1")], "en", case="fold").find(text)
    assert [(x.start, x.end) for x in folded] == [(3, 10), (15, 22)]
    exact = Matcher([("aspirin", "C1")], "en", case="exact").find(text)
    assert exact == []


def test_min_length_and_stop_list() -> None:
    names = [("ab", "C1"), ("abc", "C2"), ("of", "C3")]
    text = "ab abc of"
    assert [x.concept for x in Matcher(names, "en", min_length=3).find(text)] == ["C2"]
    assert [x.concept for x in Matcher(names, "en", stop_words=["OF"]).find(text)] == ["C1", "C2"]


def test_shared_name_keeps_all_concepts_and_picks_smallest() -> None:
    m = Matcher([("cold", "C9"), ("Cold", "C2"), ("cold", "C5")], "en")
    (x,) = m.find("a cold day")
    assert x.concepts == ("C2", "C5", "C9") and x.concept == "C2"


def test_from_kb(tmp_path) -> None:
    kb = KnowledgeBase(tmp_path / "kb.sqlite", create=True)
    kb.add_concepts([("C1", None, "t")])
    kb.add_names([("C1", "en", "heart attack", 1, "t"), ("C1", "zh", "心梗", 1, "t")])
    kb.commit()
    m = Matcher.from_kb(kb, "en")
    assert [(x.start, x.end, x.concept) for x in m.find("A heart attack.")] == [(2, 14, "C1")]
    from kbioxlm.errors import KbioxlmError

    with pytest.raises(KbioxlmError, match="no names in language 'fr'"):
        Matcher.from_kb(kb, "fr")
    kb.close()


def test_single_word_key_shared_by_a_punctuation_variant() -> None:
    """A one-word key skips verification until another name maps to the same key ("fever." and
    "fever" both become " fever "); then each variant must be verified against the text."""
    names = [("fever", "C1"), ("cough", "C3"), ("fever.", "C2"), ("fever", "C4"), ("a.b", "C5"), ("a b", "C6")]
    for text in ("a fever. and fever cough.", "fever.fever fever", "a.b a b a-b", "cough, fever"):
        m = Matcher(names, "en")
        assert m.find(text) == brute_force_matches(text, names, "en")
