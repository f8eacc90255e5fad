"""Dictionary matching of KB names in text: Aho-Corasick, longest-leftmost, non-overlapping.

Why this shape (DESIGN.md section 4):

* pyahocorasick's C automaton walks the text once, whatever the number of names; a Python dict
  lookup of every n-gram costs one slice and one hash per (position, length).
* ``Automaton.iter_long`` is NOT used: it returned wrong matches on Chinese text here. We take all
  matches from ``iter()`` and do the longest-leftmost selection ourselves (a few lines of Python,
  and only over the candidates the automaton reports).
* Space-delimited languages: a match must not cut a word. Instead of filtering the (many) matches
  that start or end inside words in Python, the automaton is built over *boundary keys*: text and
  names are mapped character-for-character (offsets kept) so every non-alphanumeric character
  becomes a space, and a name that begins (ends) with a letter/digit gets a leading (trailing)
  space. Such a key can only occur at a word boundary, so the automaton reports almost nothing
  else; the mapping is lossy for punctuation (``beta-catenin`` and ``beta catenin`` share a key),
  so each candidate is verified against the case-folded text.
* Unspaced scripts (zh, ja, ...) match on characters; only a Latin/digit run (``SARS`` inside
  ``SARST细胞``) is protected from being cut. The automaton runs over the UTF-16 bytes of the text
  (see :func:`_byte_pairs`): 3-10x faster than over the characters themselves.

Case folding keeps offsets valid: ``str.lower`` is used when it keeps the length (it does for all
but a handful of characters such as U+0130), otherwise the text is folded per character.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import ahocorasick

from ..schema import is_unspaced

if TYPE_CHECKING:  # pragma: no cover
    from .store import KnowledgeBase

MAX_NAME_CHARS = 1023  # names longer than this are skipped (the length is kept in 10 bits)
_LEN_MASK = 1023
_FLAG = 1024  # boundary keys: the key has a trailing sentinel; unspaced: the name needs an edge check
# Boundary keys of one word (letters/digits only, one name): any occurrence of the key is that name
# (letters/digits map to themselves), so the per-candidate verification is skipped. Most
# candidates the automaton reports are such single words.
_NOCHECK = 2048

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


# Non-alphanumeric -> space, character for character. ASCII text takes a bytes.translate fast path.
_ASCII_PHI = bytes((b if chr(b).isalnum() else 0x20) for b in range(128)) + bytes(range(128, 256))
_NON_ALNUM = re.compile(r"[\W_]")


def boundary_map(text: str) -> str:
    """Map every non-alphanumeric character to a space, keeping offsets."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_PHI).decode("ascii")
    return _NON_ALNUM.sub(" ", text)


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
    ) -> None:
        if case not in ("fold", "exact"):
            raise ValueError(f"case must be 'fold' or 'exact', got {case!r}")
        self.lang = lang
        self.case = case
        self.min_length = max(1, int(min_length))
        self.unspaced = is_unspaced(lang)
        self._fold = case == "fold"
        stop = {self._fold_text(s) for s in stop_words}
        interned: dict[str, str] = {}
        # Per key: the concept(s) and, for boundary keys, the folded name(s) that verify it.
        self._key_cids: list[str | tuple[str, ...]] = []
        self._key_names: list[str | dict[str, str | tuple[str, ...]] | None] = []
        self._key_variants: dict[int, tuple[tuple[str, int, int], ...]] = {}
        # STORE_INTS: the key index lives inside the trie node (STORE_ANY would add one Python int
        # object of 32 bytes per key, ~30 MB for 880k names). pyahocorasick's STORE_INTS values are
        # 32-bit signed, so only the index is stored there; each key's length and flags are in
        # ``_meta`` (2 bytes per key).
        meta = array("H")
        auto = ahocorasick.Automaton(ahocorasick.STORE_INTS, ahocorasick.KEY_STRING)
        self.n_names = 0
        self.max_name_chars = 0
        for text, cid in names:
            name = self._fold_text(text)
            n = len(name)
            if n < self.min_length or n > MAX_NAME_CHARS or name in stop or not _has_alnum(name):
                continue
            cid = interned.setdefault(cid, cid)
            self.n_names += 1
            if n > self.max_name_chars:
                self.max_name_chars = n
            if self.unspaced:
                if _ASTRAL.search(name):
                    continue  # see _byte_pairs: astral characters are never matched in unspaced text
                key = _byte_pairs(name)
                flag = _FLAG if (is_word_char(name[0], True) or is_word_char(name[-1], True)) else 0
            else:
                lead = name[0].isalnum()
                trail = name[-1].isalnum()
                key = (" " if lead else "") + boundary_map(name) + (" " if trail else "")
                flag = _FLAG if trail else 0
            # The trie itself is the key -> index table (no second dict of 880k keys in memory).
            idx = auto.get(key, -1)
            if idx < 0:
                idx = len(self._key_cids)
                self._key_cids.append(cid)
                # A name of letters/digits/spaces only, with a letter/digit at both ends, is its
                # own key minus the two sentinel spaces: store None, verify against the mapped text.
                plain = not self.unspaced and lead and trail and boundary_map(name) == name
                self._key_names.append(None if plain or self.unspaced else name)
                one_word = plain and name.isalnum()
                meta.append((_NOCHECK if one_word else 0) | flag | n)
                auto.add_word(key, idx)
                continue
            # Several names/concepts behind one key.
            if self.unspaced:
                self._key_cids[idx] = _add_cid(self._key_cids[idx], cid)
                continue
            known = self._key_names[idx]
            if known is None or known.__class__ is str:
                if known is None:
                    known = key[1:-1]
                if known == name:
                    self._key_cids[idx] = _add_cid(self._key_cids[idx], cid)
                    continue
                self._key_variants[idx] = ((known, len(known), int(known[-1].isalnum())),)
                meta[idx] &= ~_NOCHECK  # now shared by variants: verify again
                known = {known: self._key_cids[idx]}
                self._key_names[idx] = known
                self._key_cids[idx] = ""
            if name not in known:
                # Variants of one key can differ in length ("é" -> " é " and ".é" -> " é "), so each
                # keeps its own (length, trailing-sentinel) to locate its span.
                self._key_variants[idx] = (*self._key_variants.get(idx, ()), (name, n, int(trail)))
            known[name] = _add_cid(known.get(name, ()), cid)
        self.n_keys = len(self._key_cids)
        if self.unspaced:
            self._key_names = []  # keys are the folded names themselves: no verification needed
        if self.n_keys:
            auto.make_automaton()
        self._auto = auto
        self._meta = meta

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
        if not self.n_keys or not text:
            return []
        t = self._fold_text(text)
        # best[start] = (end << 40) | key_index of the longest candidate at that start. The
        # automaton reports matches by increasing end, so in unspaced mode a later match at the
        # same start is never shorter and simply overwrites.
        best: dict[int, int] = {}
        if self.unspaced:
            edges_ok = _edges_ok
            meta = self._meta
            for end, idx in self._auto.iter(_byte_pairs(_ASTRAL.sub("\uffff", t))):
                if end & 1:  # an even end is a key found across a character boundary
                    e = (end + 1) >> 1
                    v = meta[idx]
                    s = e - (v & _LEN_MASK)
                    if v & _FLAG and not edges_ok(t, s, e):
                        continue
                    best[s] = (e << 40) | idx
        else:
            u = " " + boundary_map(t) + " "
            names = self._key_names
            get = best.get
            meta = self._meta
            for end, idx in self._auto.iter(u):
                v = meta[idx]
                if v & _NOCHECK:
                    s = end - (v & _LEN_MASK) - 1
                    p = ((end - 1) << 40) | idx
                    if p > get(s, 0):
                        best[s] = p
                    continue
                known = names[idx]
                if known is None or known.__class__ is str:
                    n = v & _LEN_MASK
                    s = end - n - (1 if v & _FLAG else 0)
                    e = s + n
                    if known is None:
                        if t[s:e] != u[s + 1 : e + 1]:
                            continue
                    elif t[s:e] != known:
                        continue
                    p = (e << 40) | idx
                    if p > get(s, 0):
                        best[s] = p
                    continue
                for name, n, trail in self._key_variants[idx]:  # rare: punctuation-variant names
                    s = end - n - trail
                    e = s + n
                    if t[s:e] == name:
                        p = (e << 40) | idx
                        if p > get(s, 0):
                            best[s] = p
        out: list[tuple[int, int, int]] = []
        last = 0
        mask = (1 << 40) - 1
        for s in sorted(best):
            if s >= last:
                p = best[s]
                last = p >> 40
                out.append((s, last, p & mask))
        return out

    def find_concepts(self, text: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """Selected matches as ``(start, end, concepts)`` (the builders' entry point)."""
        spans = self.find_spans(text)
        cids_of = self._key_cids
        if self.unspaced:
            return [(s, e, (c,) if (c := cids_of[k]).__class__ is str else c) for s, e, k in spans]
        return [(s, e, self.concepts_of(text, s, e, k)) for s, e, k in spans]

    def concepts_of(self, text: str, start: int, end: int, key_index: int) -> tuple[str, ...]:
        """Sorted concept ids of a span found by :meth:`find_spans`."""
        cids = self._key_cids[key_index]
        if not self.unspaced:
            known = self._key_names[key_index]
            if known.__class__ is dict:
                cids = known[self._fold_text(text[start:end])]
        return (cids,) if isinstance(cids, str) else cids

    def key_concepts(self, key_index: int) -> tuple[str, ...] | None:
        """Sorted concept ids of a key when they do not depend on the matched text, else ``None``.

        Only keys shared by punctuation variants (``beta-catenin`` / ``beta catenin``) need the
        text (:meth:`concepts_of`); the builders cache the answer per key for all others.
        """
        if not self.unspaced and self._key_names[key_index].__class__ is dict:
            return None
        cids = self._key_cids[key_index]
        return (cids,) if cids.__class__ is str else cids

    def find(self, text: str) -> list[Match]:
        """Longest-leftmost non-overlapping matches of KB names in ``text``."""
        return [Match(s, e, self.concepts_of(text, s, e, k)) for s, e, k in self.find_spans(text)]


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _byte_pairs(text: str) -> str:
    """Each (BMP) character as two latin-1 characters: its UTF-16 big-endian bytes.

    Why: pyahocorasick finds a child by scanning the node's children linearly, so an automaton
    whose root has thousands of children (one per CJK character) is slow on Chinese text. Over
    byte pairs no node has more than 256 children; character ``i`` is at positions ``2i, 2i+1``, and
    a key found at an odd offset is discarded. Astral characters (outside the BMP, rare in text)
    would take 4 bytes and shift offsets, so the text replaces them by U+FFFF first and names
    containing them are not matched in unspaced languages.
    """
    return text.encode("utf-16-be").decode("latin-1")


def _has_alnum(name: str) -> bool:
    # A name without any letter/digit ("%", "--") is noise, and as a boundary key it would match
    # every space of the text.
    return any(c.isalnum() for c in name)


def _add_cid(cids: str | tuple[str, ...], cid: str) -> str | tuple[str, ...]:
    have = (cids,) if isinstance(cids, str) else cids
    if cid in have:
        return cids
    return tuple(sorted((*have, cid)))


def _edges_ok(t: str, s: int, e: int) -> bool:
    """Unspaced mode: the match does not cut a Latin/digit run at either edge."""
    if s > 0 and is_word_char(t[s], True) and is_word_char(t[s - 1], True):
        return False
    if e < len(t) and is_word_char(t[e - 1], True) and is_word_char(t[e], True):
        return False
    return True


def brute_force_matches(
    text: str, names: Iterable[tuple[str, str]], lang: str, case: str = "fold", min_length: int = 2,
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
        if len(f) < max(1, min_length) or len(f) > MAX_NAME_CHARS or f in stop or not _has_alnum(f):
            continue
        if unspaced and _ASTRAL.search(f):
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
