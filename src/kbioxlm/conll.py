"""The CoNLL NER line format, shared by the KB stage (``kb mine-pairs``) and the task readers, and
what every stage does with its token/tag lists: BIO spans (:func:`bio_spans`) and the text a token
list stands for (:func:`join_tokens`, used by translation and the LLM baselines).

Only the line level lives here (what a line is, which tags are valid, where an error is); how lines
group into sentences or documents is each caller's business: the task readers split sentences at
blank lines, ``mine-pairs`` aligns whole documents by id. Format::

    -DOCSTART-<TAB><doc id>
    <blank>
    token<TAB>BIO-tag          (or token<space>...<space>tag: the last column is the tag)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .errors import KbioxlmError, where
from .io import iter_lines
from .schema import is_unspaced

DOCSTART = "-DOCSTART-"
# CJK ideographs, kana, hangul and CJK/full-width punctuation (a character class body): the
# characters that are tokens of their own in unspaced text (translate.projection's tokenizer).
CJK_CHARS = (
    r"\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
)
CJK_RE = re.compile(f"[{CJK_CHARS}]")


class ConllLine(NamedTuple):
    """One line: ``kind`` is ``doc`` (``text`` = the id after ``-DOCSTART-``, maybe empty), ``blank``
    or ``token`` (``text`` = the token, ``tag`` = its BIO tag)."""

    lineno: int
    kind: str
    text: str = ""
    tag: str = ""


def is_bio_tag(tag: str) -> bool:
    return tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)


def iter_conll(
    path: str | os.PathLike[str], lines: Iterable[tuple[int, str]] | None = None, tags_optional: bool = False
) -> Iterator[ConllLine]:
    """Classified lines of a CoNLL file; a malformed line raises ``file:line: reason``.

    ``lines``: ``(line number, line)`` pairs to read instead of the file (e.g. a reader with a
    progress bar); ``path`` still names the file in errors. ``tags_optional``: a line holding only
    a token is a token with tag ``""`` (text to be tagged, ``kbioxlm predict``), not an error.
    """
    for lineno, raw in iter_lines(path) if lines is None else lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            yield ConllLine(lineno, "blank")
            continue
        if line.startswith(DOCSTART):
            yield ConllLine(lineno, "doc", line[len(DOCSTART) :].strip())
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            parts = line.split()
        if len(parts) < 2 and tags_optional:
            yield ConllLine(lineno, "token", line.strip(), "")
            continue
        if len(parts) < 2:
            raise KbioxlmError(f"{where(path, lineno)}: expected 'token<TAB>tag', got {line[:60]!r}")
        token, tag = parts[0], parts[-1].strip()
        if not is_bio_tag(tag):
            raise KbioxlmError(f"{where(path, lineno)}: bad tag {tag!r} (expected O, B-<type> or I-<type>)")
        if not token.strip():
            raise KbioxlmError(f"{where(path, lineno)}: empty token")
        yield ConllLine(lineno, "token", token, tag)


def bio_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end_exclusive, type)`` token spans of a BIO sequence.

    An ``I-X`` that does not continue an ``X`` chunk starts a new one (the release's EN ADE has
    ``B-Drug I-ADE`` where overlapping spans were flattened; seqeval's default mode reads it the same).
    """
    spans: list[tuple[int, int, str]] = []
    start, typ = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        if tag.startswith("I-") and start >= 0 and tag[2:] == typ:
            continue
        if start >= 0:
            spans.append((start, i, typ))
            start, typ = -1, ""
        if tag.startswith(("B-", "I-")):
            start, typ = i, tag[2:]
    return spans


def join_tokens(tokens: list[str], lang: str) -> tuple[str, list[tuple[int, int]]]:
    """Detokenize a token list into text plus each token's character span.

    Unspaced scripts (zh) are joined without spaces, except that a space is kept between two
    non-CJK tokens (``IFN`` ``-`` ``α``), so :func:`kbioxlm.translate.projection.tokenize` gives the
    same tokens back.
    """
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    unspaced = is_unspaced(lang)
    for i, tok in enumerate(tokens):
        if i > 0:
            prev = tokens[i - 1]
            need_space = (not unspaced) or not (CJK_RE.match(prev[-1:]) or CJK_RE.match(tok[:1]))
            if need_space:
                parts.append(" ")
                pos += 1
        parts.append(tok)
        offsets.append((pos, pos + len(tok)))
        pos += len(tok)
    return "".join(parts), offsets
