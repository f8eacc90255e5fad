"""Entity-anchored markers: wrap gold entities as ``<1>…</1>`` before translation, parse them back after.

The paper (section 4, Figure 3) numbers each gold entity in the source sentence and asks the
translator to keep the numbered tags, so the entity can be found again in the translation whatever
the word order. Numbers, not types, are used inside the tags so a translator cannot "correct" a
type; the type stays on our side, keyed by the number. Entities may move (reordering is fine) but
each number must come back exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..conll import bio_spans, join_tokens

# Placeholders of relation datasets (GAD: @GENE$, @DISEASE$; ChemProt/DDI use the same style).
PLACEHOLDER_RE = re.compile(r"@[A-Z][A-Z_]*\$")

# Marker tags as translators return them: also tolerate inner spaces ("< 1 >", "</ 1>") and
# full-width brackets (＜1＞), which Chinese-output models emit. Anything else is "malformed".
_TAG_RE = re.compile(r"[<＜]\s*(/?)\s*(\d{1,4})\s*[>＞]")
# Leftovers that look like a broken close tag ("</3" without ">", "/2>" without "<") count as malformed
# markers. A lone "<3" is not flagged: "p < 0.05" and "< 230" are ordinary text; a lost open tag
# shows up as missing_marker anyway.
_BROKEN_RE = re.compile(r"[<＜]\s*/\s*\d{1,4}(?!\d)|(?<![<＜\d])/\s*\d{1,4}\s*[>＞]")


@dataclass
class MarkedEntity:
    """One gold entity: its marker number, type and source-side surface text."""

    n: int
    type: str
    text: str


@dataclass
class Marked:
    """A source item prepared for translation."""

    text: str  # with markers (what the backend sees)
    plain: str  # without markers (for length ratio / residue checks)
    entities: list[MarkedEntity] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)


def wrap_ner(tokens: list[str], tags: list[str], lang: str) -> Marked:
    """Join tokens into a sentence with each gold BIO span wrapped as ``<n>…</n>`` (n from 1)."""
    spans = bio_spans(tags)
    text, offsets = join_tokens(tokens, lang)
    out: list[str] = []
    ents: list[MarkedEntity] = []
    cur = 0
    for n, (s, e, typ) in enumerate(spans, start=1):
        cs, ce = offsets[s][0], offsets[e - 1][1]
        out.append(text[cur:cs])
        out.append(f"<{n}>{text[cs:ce]}</{n}>")
        ents.append(MarkedEntity(n, typ, text[cs:ce]))
        cur = ce
    out.append(text[cur:])
    return Marked("".join(out), text, ents, PLACEHOLDER_RE.findall(text))


def wrap_text(text: str) -> Marked:
    """Sequence-classification text: no markers, but its ``@GENE$``-style placeholders are tracked."""
    return Marked(text, text, [], PLACEHOLDER_RE.findall(text))


@dataclass
class Parsed:
    """A translation with markers removed: plain text, each marker's character span, and problems."""

    text: str
    spans: dict[int, tuple[int, int]]
    problems: list[tuple[str, str]]  # (reason, detail)


def parse_markers(raw: str, expected: list[int]) -> Parsed:
    """Strip ``<n>``/``</n>`` tags from a translation and locate each numbered entity.

    Problems reported (each a QC rejection reason): ``missing_marker`` (a number never came back,
    or only one of its two tags did), ``duplicate_marker`` (a tag of one number appears twice),
    ``unexpected_marker`` (a number not in the source), ``malformed_marker`` (nested/crossing
    tags, a close before its open, or a broken tag), ``empty_entity`` (nothing between the tags).
    """
    problems: list[tuple[str, str]] = []
    opens: dict[int, list[int]] = {}
    closes: dict[int, list[int]] = {}
    plain: list[str] = []
    pos = 0
    cur = 0
    events: list[tuple[str, int, int]] = []  # (kind, number, plain offset)
    for m in _TAG_RE.finditer(raw):
        chunk = raw[cur : m.start()]
        plain.append(chunk)
        pos += len(chunk)
        cur = m.end()
        n = int(m.group(2))
        kind = "close" if m.group(1) else "open"
        (closes if kind == "close" else opens).setdefault(n, []).append(pos)
        events.append((kind, n, pos))
    plain.append(raw[cur:])
    text = "".join(plain)
    if _BROKEN_RE.search(text):
        problems.append(("malformed_marker", f"broken tag {_BROKEN_RE.search(text).group(0)!r}"))  # type: ignore[union-attr]

    exp = set(expected)
    for n in sorted(set(opens) | set(closes)):
        if n not in exp:
            problems.append(("unexpected_marker", f"<{n}> not in the source"))
    spans: dict[int, tuple[int, int]] = {}
    for n in expected:
        o, c = opens.get(n, []), closes.get(n, [])
        if not o and not c:
            problems.append(("missing_marker", f"<{n}> missing"))
        elif len(o) > 1 or len(c) > 1:
            problems.append(("duplicate_marker", f"<{n}> appears {max(len(o), len(c))} times"))
        elif len(o) != len(c):
            problems.append(("missing_marker", f"<{n}> has {len(o)} open and {len(c)} close tags"))
        elif o[0] > c[0]:
            problems.append(("malformed_marker", f"</{n}> before <{n}>"))
        else:
            spans[n] = (o[0], c[0])
    # Nesting/crossing: with every tag once, the events must pair up like parentheses.
    stack: list[int] = []
    for kind, n, _ in events:
        if kind == "open":
            if stack:
                problems.append(("malformed_marker", f"<{n}> opened inside <{stack[-1]}>"))
                break
            stack.append(n)
        elif stack and stack[-1] == n:
            stack.pop()
    for n, (s, e) in spans.items():
        if not text[s:e].strip():
            problems.append(("empty_entity", f"<{n}> is empty"))
    # Trim whitespace the translator put inside the tags; the span should hug the entity.
    for n, (s, e) in list(spans.items()):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        spans[n] = (s, e)
    return Parsed(text, spans, problems)


def insert_markers(text: str, spans: dict[int, tuple[int, int]]) -> str:
    """Inverse of :func:`parse_markers` for non-overlapping spans (used by test doubles and fixes)."""
    out: list[str] = []
    cur = 0
    for n, (s, e) in sorted(spans.items(), key=lambda kv: kv[1]):
        out.append(text[cur:s])
        out.append(f"<{n}>{text[s:e]}</{n}>")
        cur = e
    out.append(text[cur:])
    return "".join(out)
