"""Project entity spans of a translated sentence onto target tokens as BIO tags.

Tokenization follows the release's conventions so projected files look like (and are read like)
the released ones:

* unspaced targets (zh): every CJK character and every punctuation mark is its own token; runs of
  Latin letters/digits (``5-FU``, ``mg``, ``FK506``, ``2.5``) stay whole, as in the release's
  Chinese ADE files;
* spaced targets (en, ...): whitespace tokens with punctuation split off; inner hyphens, dots,
  slashes and apostrophes stay inside a word (``53-year``, ``i.v``), as in the release's EN files.

Hand-written regexes rather than a library tokenizer: the goal is to reproduce the release's
token boundaries exactly, and no shipped tokenizer does this combination.
"""

from __future__ import annotations

import re

from ..conll import CJK_CHARS

# One token per CJK character (kbioxlm.conll.CJK_CHARS: ideographs, kana, hangul, CJK/full-width
# punctuation). A word: letters/digits not CJK, possibly joined by inner - . / ' (not at the ends).
_WORD = rf"[^\W{CJK_CHARS}_]+(?:[-./'’][^\W{CJK_CHARS}_]+)*"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])"  # 1,200 stays one token, as in the release
_TOKEN_RE = re.compile(rf"[{CJK_CHARS}]|['’]s\b|{_NUMBER}|{_WORD}|\S")


def tokenize(text: str, lang: str | None = None) -> list[tuple[str, int, int]]:
    """``(token, start, end)`` for ``text``; CJK characters always split, words kept whole.

    The same rule serves both unspaced and spaced targets (and code-switched mixtures from the KB
    backend): CJK characters are single tokens, non-CJK words stay whole, punctuation is split.
    ``lang`` is accepted for symmetry and future per-language rules.
    """
    del lang
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


class ProjectionError(ValueError):
    """An entity span that cannot be projected onto whole tokens (reason ``projection_failed``)."""


def project(
    text: str,
    spans: list[tuple[int, int, str]],
    lang: str,
) -> tuple[list[str], list[str]]:
    """Tokens of ``text`` and their BIO tags from character spans ``(start, end, type)``.

    The text is first cut at every entity boundary and each piece tokenized on its own, so no
    token straddles a boundary: ``<1>Aspirin</1>-induced`` gives ``Aspirin`` (B-Drug) ``-``
    ``induced`` rather than one ``Aspirin-induced`` token half inside the entity. A token
    overlapping a span is inside it; a span that covers no token, or two overlapping spans, raise
    :class:`ProjectionError` (the item goes to review).
    """
    cuts = sorted({0, len(text), *(b for s, e, _ in spans for b in (s, e) if 0 <= b <= len(text))})
    toks: list[tuple[str, int, int]] = []
    for a, b in zip(cuts, cuts[1:]):
        toks.extend((t, a + ts, a + te) for t, ts, te in tokenize(text[a:b], lang))
    tags = ["O"] * len(toks)
    owner = [-1] * len(toks)
    for k, (s, e, typ) in enumerate(sorted(spans)):
        idx = [i for i, (_, ts, te) in enumerate(toks) if ts < e and te > s]
        if not idx:
            raise ProjectionError(f"entity {text[s:e]!r} ({typ}) covers no token")
        for j, i in enumerate(idx):
            if owner[i] != -1:
                raise ProjectionError(f"entities overlap at token {toks[i][0]!r}")
            owner[i] = k
            tags[i] = ("B-" if j == 0 else "I-") + typ
    return [t for t, _, _ in toks], tags
