"""Dictionary matching of KB names in text: Aho-Corasick, longest-leftmost, non-overlapping.

Why this shape (docs/design.md, "Corpus semantics" and the matcher under "Deviations"):

* ``daachorse`` (Python bindings of the Rust ``daachorse`` crate: a character-wise double-array
  Aho-Corasick automaton) walks the text once, whatever the number of names, and does the
  leftmost-longest non-overlapping selection itself, so Python sees only the selected matches.
  pyahocorasick (the reference design's choice) reports every candidate (its ``iter_long``
  returned wrong matches on Chinese here) and the selection in Python cost more than the walk;
  ``ahocorasick_rs`` (used in between) selects inside too but walks the 880k-name benchmark
  automaton about 1.7x (EN) and 2.1x (ZH) slower. Identical spans with all three.
* Word boundaries without per-candidate checks: text and names get a sentinel ``\x00`` before
  and after every run of word characters (:func:`mark_words`, i.e.
  :func:`mark_runs`; ``unmark_spans`` maps offsets back). A name's marked form
  then occurs in the marked text exactly where the name occurs without cutting a word: a sentinel in the name
  can only meet a sentinel of the text, which sits at a run boundary, and the sentinels are
  zero-width in the original text. The greedy selection over the marked text is therefore the
  greedy selection over valid candidates, as :func:`brute_force_matches` defines it (tested on
  random inputs). Space-delimited languages: word characters are letters/digits; unspaced
  scripts (zh, ja, ...): only letters/digits outside those scripts (``SARS`` must not be cut out
  of ``SARST细胞``), so CJK-only text is left unmarked and matched as is.

Case folding keeps offsets valid: ``str.lower`` is used when it keeps the length (it does for all
but a handful of characters such as U+0130), otherwise the text is folded per character.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

import daachorse

from ..schema import is_unspaced

if TYPE_CHECKING:  # pragma: no cover
    from .store import KnowledgeBase


@lru_cache(maxsize=8)
def _runs_pattern(excluded: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    # ``[^\W_]`` is exactly str.isalnum (CPython's \w is isalnum() or "_").
    ranges = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in excluded)
    return re.compile(f"([^\\W_{ranges}]+)")


def mark_runs(text: str, excluded: tuple[tuple[int, int], ...]) -> str | None:
    """``text`` with a NUL before and after every maximal run of word characters (``isalnum``
    and outside the inclusive code point ranges ``excluded``); ``None`` when there is none."""
    parts = _runs_pattern(excluded).split(text)
    return None if len(parts) == 1 else "\x00".join(parts)


def unmark_spans(marked: str, matches: list[tuple[int, int, int]], sentinel: str) -> list[tuple[int, int, int]]:
    """``matches`` ``(start, end, key)`` in ``marked`` (in text order, not overlapping) with offsets
    in the text without the ``sentinel`` characters (zero-width there)."""
    out: list[tuple[int, int, int]] = []
    append = out.append
    count = marked.count
    prev = shift = 0  # shift: sentinels before the current position
    for s, e, k in matches:
        shift += count(sentinel, prev, s)
        start = s - shift
        shift += count(sentinel, s, e)
        append((start, e - shift, k))
        prev = e
    return out


SENTINEL = "\x00"
_NATIVE_SENTINEL_STANDIN = "\ufffe"  # a text's own NUL characters (never in a name) become this

# Characters of scripts written without spaces: each is a "word" by itself in unspaced mode.
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),  # half-width katakana
    (0x20000, 0x3134F),
)


def is_unspaced_char(c: str) -> bool:
    """True for a character of an unspaced script (CJK, kana, Thai, ...)."""
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in _UNSPACED_RANGES)


def is_word_char(c: str, unspaced: bool) -> bool:
    """A character that belongs to a word a match must not cut.

    In space-delimited languages every letter/digit; in unspaced languages only letters/digits
    outside the unspaced scripts (Latin abbreviations, numbers), since each CJK character may start
    or end a term.
    """
    return c.isalnum() and not (unspaced and is_unspaced_char(c))


def fold_case(text: str) -> str:
    """Lower-case ``text`` without changing its length (so offsets stay valid)."""
    low = text.lower()
    if len(low) == len(text):  # no character expanded (lower() never shrinks)
        return low
    out = []
    for c in text:
        lc = c.lower()
        out.append(lc if len(lc) == 1 else c)
    return "".join(out)


def mark_words(text: str, unspaced: bool) -> str:
    """``text`` with :data:`SENTINEL` before and after every run of word characters (letters and
    digits; in unspaced mode only those outside the unspaced scripts)."""
    marked = mark_runs(text, _UNSPACED_RANGES if unspaced else ())
    return text if marked is None else marked


class Match(NamedTuple):
    """One selected match: ``text[start:end]`` is a name of ``concepts`` (sorted; first = chosen)."""

    start: int
    end: int
    concepts: tuple[str, ...]

    @property
    def concept(self) -> str:
        return self.concepts[0]


class Matcher:
    """Longest-leftmost, non-overlapping matcher over all names of one language.

    ``case``: ``"fold"`` (case-insensitive) or ``"exact"``. ``min_length``: names shorter than this
    (in characters) are ignored. ``stop_words``: names never matched (compared after folding).
    ``exclude_names``: names of held-out concepts (``--exclude-concepts``), never matched whatever
    ``case`` is: compared case-folded (:func:`fold_case`), so a name of another concept that equals
    one of them up to case is left out too.
    A name shared by several concepts keeps all of them, sorted; :attr:`Match.concept` is the
    smallest id, so the choice is deterministic.
    """

    def __init__(
        self,
        names: Iterable[tuple[str, str]],
        lang: str,
        case: str = "fold",
        min_length: int = 2,
        stop_words: Iterable[str] = (),
        exclude_names: Iterable[str] = (),
    ) -> None:
        if case not in ("fold", "exact"):
            raise ValueError(f"case must be 'fold' or 'exact', got {case!r}")
        self.lang = lang
        self.case = case
        self.min_length = max(1, int(min_length))
        self.unspaced = is_unspaced(lang)
        self._fold = case == "fold"
        stop = {self._fold_text(s) for s in stop_words}
        held = {fold_case(s) for s in exclude_names}
        interned: dict[str, str] = {}
        index: dict[str, int] = {}  # marked name -> key index (dropped after the build)
        self._key_cids: list[str | tuple[str, ...]] = []
        self.n_names = 0
        self.max_name_chars = 0
        for text, cid in names:
            name = self._fold_text(text)
            n = len(name)
            if n < self.min_length or name in stop or not _usable(name):
                continue
            if held and (name if self._fold else fold_case(name)) in held:
                continue
            self.n_names += 1
            if n > self.max_name_chars:
                self.max_name_chars = n
            cid = interned.setdefault(cid, cid)
            key = mark_words(name, self.unspaced)
            idx = index.get(key)
            if idx is None:
                index[key] = len(self._key_cids)
                self._key_cids.append(cid)
            else:
                self._key_cids[idx] = _add_cid(self._key_cids[idx], cid)
        self.n_keys = len(self._key_cids)
        self._find = None
        if self.n_keys:
            patterns = list(index)  # in key-index order (dicts keep insertion order)
            del index
            auto = daachorse.CharwiseDoubleArrayAhoCorasick(patterns, match_kind=daachorse.MATCH_KIND_LEFTMOST_LONGEST)
            del patterns
            self._find = auto.find  # (start, end, key index), character offsets
            release_freed_memory()
        self._excluded = _UNSPACED_RANGES if self.unspaced else ()

    @classmethod
    def from_kb(cls, kb: KnowledgeBase, lang: str, **options: object) -> Matcher:
        """All names of ``lang`` in the KB (raises KbioxlmError if it has none)."""
        kb.require_language(lang)
        return cls(((text, cid) for text, cid, _pref in kb.iter_names(lang)), lang, **options)  # type: ignore[arg-type]

    def _fold_text(self, text: str) -> str:
        return fold_case(text) if self._fold else text

    def __len__(self) -> int:
        return self.n_names

    # ---- matching --------------------------------------------------------------------------
    def find_spans(self, text: str) -> list[tuple[int, int, int]]:
        """Selected matches as ``(start, end, key_index)``, in text order (the fast path)."""
        if self._find is None or not text:
            return []
        t = self._fold_text(text)
        if SENTINEL in t:
            t = t.replace(SENTINEL, _NATIVE_SENTINEL_STANDIN)
        u = mark_runs(t, self._excluded)
        if u is None:  # no word run to mark (CJK-only text): offsets are the text's own
            return self._find(t)
        return unmark_spans(u, self._find(u), SENTINEL)

    def find_concepts(self, text: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """Selected matches as ``(start, end, concepts)``."""
        cids_of = self._key_cids
        return [(s, e, (c,) if isinstance(c := cids_of[k], str) else c) for s, e, k in self.find_spans(text)]

    def key_concepts(self, key_index: int) -> tuple[str, ...]:
        """Sorted concept ids of a key (of a span from :meth:`find_spans`); the builders cache what
        they derive from them per key."""
        cids = self._key_cids[key_index]
        return (cids,) if isinstance(cids, str) else cids

    def find(self, text: str) -> list[Match]:
        """Longest-leftmost non-overlapping matches of KB names in ``text``."""
        return [Match(*m) for m in self.find_concepts(text)]


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    Why: building the automaton of 880k English names frees about 700 MB of temporaries that
    the allocator would otherwise keep resident (RSS 1.2 GB instead of 0.5 GB), memory that
    forked build workers and the rest of a pipeline then lack."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _usable(name: str) -> bool:
    # A name without any letter/digit ("%", "--") is noise; one holding the sentinel (or the
    # stand-in for a text's own NULs) could not be told apart from a word boundary.
    return any(c.isalnum() for c in name) and SENTINEL not in name and _NATIVE_SENTINEL_STANDIN not in name


def _add_cid(cids: str | tuple[str, ...], cid: str) -> str | tuple[str, ...]:
    have = (cids,) if isinstance(cids, str) else cids
    if cid in have:
        return cids
    return tuple(sorted((*have, cid)))


def brute_force_matches(
    text: str,
    names: Iterable[tuple[str, str]],
    lang: str,
    case: str = "fold",
    min_length: int = 2,
    stop_words: Iterable[str] = (),
) -> list[Match]:
    """Reference implementation of the matching semantics, O(n^2): for tests only.

    Every substring is looked up; boundary rule: a match must not cut a word (see
    :func:`is_word_char`); selection: smallest start first, longest at that start, no overlap.
    """
    fold = fold_case if case == "fold" else (lambda x: x)
    unspaced = is_unspaced(lang)
    stop = {fold(s) for s in stop_words}
    table: dict[str, set[str]] = {}
    for name, cid in names:
        f = fold(name)
        if len(f) < max(1, min_length) or f in stop or not _usable(f):
            continue
        table.setdefault(f, set()).add(cid)
    t = fold(text)
    n = len(t)

    def cuts(i: int) -> bool:  # boundary between t[i-1] and t[i] lies inside a word
        return 0 < i < n and is_word_char(t[i - 1], unspaced) and is_word_char(t[i], unspaced)

    out: list[Match] = []
    s = 0
    while s < n:
        found = None
        for e in range(n, s, -1):
            if t[s:e] in table and not cuts(s) and not cuts(e):
                found = e
                break
        if found is None:
            s += 1
            continue
        out.append(Match(s, found, tuple(sorted(table[t[s:found]]))))
        s = found
    return out
