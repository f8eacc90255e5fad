"""Sentence splitting for the fact window and for cutting passages, returning character spans.

Hand-written (one regex plus a few rules) because the field's splitters either need a model
download (stanza, spaCy models) or do not handle Chinese punctuation; what the corpus builders need
is narrow: never break inside decimals (``3.5 mg``), after common abbreviations (``e.g.``,
``et al.``, ``Fig.``, ``vs.``), and break after Chinese ``。！？；…`` without any space.
"""

from __future__ import annotations

import re

# Abbreviations after which a period does not end a sentence (compared lower-cased, without the
# final period). Single capital initials ("J. Smith") are handled by a rule below.
ABBREVIATIONS = frozenset(
    """e.g i.e et al etc fig figs dr mr mrs ms prof vs viz cf approx ca no nos vol eq eqs ref refs
    resp incl wt st jr sr dept univ inc ltd co corp al sec tab suppl""".split()
)

# A boundary candidate: a run of terminators, closing quotes/brackets, then (for ASCII
# terminators) whitespace. Chinese terminators need no following space.
_BOUNDARY = re.compile(
    r"(?:[。！？；!?]+|…+|\.{3,}|\.)[\"'”’」』）)\]]*(?=\s|$)"  # terminators followed by space/end
    r"|[。！？；…]+[”’」』）)\"']*"  # Chinese terminators anywhere
    r"|\n\s*"  # a line break always ends a sentence
)
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)\.?$")
_SPACE = re.compile(r"\s")


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at ``text[dot]`` closes an abbreviation or an initial."""
    m = _WORD_BEFORE.search(text, max(0, dot - 12), dot + 1)
    if not m:
        return False
    raw = m.group(1).rstrip(".")
    if raw.lower() in ABBREVIATIONS:
        return True
    # A single capital letter ("J. Smith") is an initial; "U.S." style dotted capitals too.
    return len(raw) == 1 and raw.isupper()


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` over ``text``, stripped of surrounding whitespace.

    Rules: a period directly followed by a non-space (``3.5``, ``U.S.A``) never breaks; a
    period after an abbreviation never breaks; a period followed by a lower-case letter does not
    break (``approx. five``); ``。！？；…`` always break; so does a newline.
    """
    if "." not in text and not _SPACE.search(text):
        # Fast path (most Chinese text): every boundary breaks and nothing needs stripping.
        cuts = [0, *(m.end() for m in _BOUNDARY.finditer(text)), len(text)]
        return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
    return _split_by_rules(text)


def _split_by_rules(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        tok = m.group(0)
        if tok.startswith(".") and not tok.startswith("..."):
            if _is_abbreviation(text, m.start()):
                continue
            nxt = _next_non_space(text, end)
            if nxt < n and text[nxt].islower():
                continue
        _add(spans, text, start, end)
        start = end
    _add(spans, text, start, n)
    return spans


def _next_non_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def _add(spans: list[tuple[int, int]], text: str, s: int, e: int) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        spans.append((s, e))
