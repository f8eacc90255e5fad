"""What the entity and fact builders need from the KB, loaded once per process.

Loaded in the parent before the worker pool forks, so workers share it copy-on-write; on
platforms without ``fork`` each worker loads it again from the same options (same result).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KbioxlmError
from ..kb.matcher import Matcher, fold_case
from ..kb.split import held_out_names
from ..kb.store import KnowledgeBase
from ..schema import is_unspaced
from .targets import cumulative


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the builders derive from one matched key (a KB name's concepts), computed once per key.

    Why a per-key cache: with a large KB a match comes every few characters, and the same few
    thousand names repeat; looking their concepts, names and relations up per mention cost more
    than the automaton walk.
    """

    concept: str
    """The entity's concept: the first (smallest) of the key's concepts with a name in the other
    language (in any target language, with several), else the smallest."""
    target_name: str | None
    """``concept``'s preferred name in the other language; ``None``: the entity cannot be switched."""
    first_concept: str
    """The smallest of the key's concepts: the fact builder's view of the mention."""
    tails: tuple[str, ...]
    """The concepts ``first_concept`` has relations to (empty unless facts are built)."""
    choices: tuple[tuple[str, str], ...] = ()
    """Several target languages (``--target-langs``): ``(lang, name)`` of ``concept`` in each target
    language it has a preferred name in, in the order of the list (``target_name`` is the first);
    empty with a single target language."""
    cum_weights: tuple[float, ...] = ()
    """The cumulative weights of ``choices`` (a switch draws among them, renormalised)."""


@dataclass(frozen=True)
class BuildOptions:
    """Everything that determines a build's output (besides the input file)."""

    kb: str
    lang: str
    target_lang: str
    task: str = "entity"  # entity | fact | entity+fact (one matching pass, two outputs)
    seed: int = 0
    max_switches: int = 10
    case: str = "fold"
    min_length: int = 2
    stop_words: tuple[str, ...] = ()
    fact_lang: str = "target"  # target | source
    window: int = 1
    max_facts: int = 5
    # Held-out concepts (``--exclude-concepts``), sorted and unique: never matched, switched in or
    # part of a fact, nor are any of their names (see Knowledge.load). Empty: the KB as it is.
    exclude_concepts: tuple[str, ...] = ()
    # Several target languages (``--target-langs``): ``(lang, weight)`` pairs, weights summing to 1,
    # ``target_lang`` the first of them. Empty: ``target_lang`` alone (the output of a single target
    # is the same however it is given).
    target_langs: tuple[tuple[str, float], ...] = ()

    @property
    def targets(self) -> tuple[tuple[str, float], ...]:
        """The target languages with their weights: ``target_langs``, else ``((target_lang, 1.0),)``."""
        return self.target_langs or ((self.target_lang, 1.0),)

    @property
    def multi(self) -> bool:
        """Documents in ``lang`` switch into (and get facts in) one of several languages, drawn by weight."""
        return len(self.target_langs) > 1

    @property
    def languages(self) -> tuple[str, ...]:
        """``lang`` and every target language."""
        return (self.lang, *(t for t, _w in self.targets))


@dataclass
class Knowledge:
    """Matchers per source language, names per language, relations and relation names."""

    options: BuildOptions
    matchers: dict[str, Matcher] = field(default_factory=dict)
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # lang -> concept -> name
    relations: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    tails: dict[str, tuple[str, ...]] = field(default_factory=dict)  # head -> tails it has relations to
    relation_names: dict[str, dict[str, str]] = field(default_factory=dict)
    held_out_names: frozenset[str] = frozenset()  # case-folded names (all languages) of excluded concepts
    unknown_excluded: int = 0  # excluded ids without any name in the KB
    # Per matcher and key: what the builders derive from the key's concepts, filled on first
    # sight (a list of n_keys slots: 8 bytes per key, no per-document KB work).
    _entity_keys: dict[object, list] = field(default_factory=dict, repr=False)
    _labels: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, options: BuildOptions, source_langs: tuple[str, ...]) -> Knowledge:
        if not Path(options.kb).exists():
            raise KbioxlmError(f"{options.kb}: knowledge base not found (build it with `kbioxlm kb import ...`)")
        know = cls(options)
        held = frozenset(options.exclude_concepts)
        with KnowledgeBase(options.kb) as kb:
            for lang in options.languages:
                kb.require_language(lang)
            if held:
                know.held_out_names, know.unknown_excluded = held_out_names(kb, options.exclude_concepts)
            held_names = know.held_out_names
            for lang in source_langs:
                know.matchers[lang] = Matcher.from_kb(
                    kb,
                    lang,
                    case=options.case,
                    min_length=options.min_length,
                    stop_words=options.stop_words,
                    exclude_names=held_names,
                )
            for lang in options.languages:
                names = kb.preferred_names(lang)
                if held:
                    # Neither switched in nor written in a fact: held-out concepts, and concepts whose
                    # preferred name here is also a name of a held-out concept.
                    names = {c: n for c, n in names.items() if c not in held and fold_case(n) not in held_names}
                know.names[lang] = names
            if "fact" in options.task.split("+"):
                rels: dict[tuple[str, str], list[str]] = {}
                for head, rel, tail in kb.iter_relations():
                    if head != tail and head not in held and tail not in held:
                        rels.setdefault((head, tail), []).append(rel)
                know.relations = {k: tuple(sorted(set(v))) for k, v in rels.items()}
                tails: dict[str, list[str]] = {}
                for head, tail in know.relations:
                    tails.setdefault(head, []).append(tail)
                know.tails = {h: tuple(ts) for h, ts in tails.items()}
                for lang in options.languages:
                    know.relation_names[lang] = kb.relation_names(lang)
                if held_names:  # a relation whose label is a held-out name is no fact to write
                    bad = {
                        r
                        for rs in know.relations.values()
                        for r in rs
                        if any(fold_case(know.relation_name(r, lg)) in held_names for lg in options.languages)
                    }
                    if bad:
                        know.relations = {
                            k: kept for k, v in know.relations.items() if (kept := tuple(r for r in v if r not in bad))
                        }
                        kept_tails: dict[str, list[str]] = {}
                        for head, tail in know.relations:
                            kept_tails.setdefault(head, []).append(tail)
                        know.tails = {h: tuple(ts) for h, ts in kept_tails.items()}
        return know

    def other(self, lang: str) -> str:
        """The language a document in ``lang`` is switched into / gets its facts in (with several
        target languages, the first of them for a ``lang`` document: see :attr:`KeyInfo.choices`)."""
        o = self.options
        return o.target_lang if lang == o.lang else o.lang

    def entity_infos(self, lang: str, spans: list[tuple[int, int, int]]) -> list[KeyInfo]:
        """The :class:`KeyInfo` of each match ``(start, end, key)`` of a ``lang`` text.

        Cached per matcher and key, filled on first sight: the KB is not consulted per document
        (a list of ``n_keys`` slots, 8 bytes per key)."""
        matcher = self.matchers[lang]
        cache = self._entity_keys.get(matcher)  # per matcher: a benchmark swaps in another one
        if cache is None:
            cache = self._entity_keys[matcher] = [None] * matcher.n_keys
        infos = [cache[key] for _s, _e, key in spans]
        if None in infos:
            multi = self.options.multi and lang == self.options.lang
            targets = self.names[self.other(lang)]
            for i, info in enumerate(infos):
                if info is None:
                    key = spans[i][2]
                    info = cache[key]
                    if info is None:
                        cids = matcher.key_concepts(key)
                        info = cache[key] = self._multi_key_info(cids) if multi else self._key_info(cids, targets)
                    infos[i] = info
        return infos

    def _key_info(self, cids: tuple[str, ...], targets: dict[str, str]) -> KeyInfo:
        """The :class:`KeyInfo` of a key whose concepts are ``cids`` (sorted); ``targets``: concept
        -> preferred name in the other language."""
        concept, name = cids[0], None
        for c in cids:
            if c in targets:
                concept, name = c, targets[c]
                break
        return KeyInfo(concept, name, cids[0], self.tails.get(cids[0], ()))

    def _multi_key_info(self, cids: tuple[str, ...]) -> KeyInfo:
        """:meth:`_key_info` with several target languages: the first of ``cids`` with a name in any
        of them, with its names and weights in each (:attr:`KeyInfo.choices`)."""
        tails = self.tails.get(cids[0], ())
        for c in cids:
            have = [(lang, w) for lang, w in self.options.targets if c in self.names[lang]]
            if have:
                choices = tuple((lang, self.names[lang][c]) for lang, _w in have)
                return KeyInfo(c, choices[0][1], cids[0], tails, choices, cumulative([w for _lang, w in have]))
        return KeyInfo(cids[0], None, cids[0], tails)

    def relation_name(self, rel: str, lang: str) -> str:
        """The KB's name of ``rel`` in ``lang``; else the id with underscores as spaces."""
        return self.relation_names.get(lang, {}).get(rel) or rel.replace("_", " ")

    def relation_labels(self, lang: str) -> dict[str, str]:
        """:meth:`relation_name` in ``lang`` of every relation type of the loaded relations."""
        labels = self._labels.get(lang)
        if labels is None:
            rels = {r for rs in self.relations.values() for r in rs}
            labels = self._labels[lang] = {r: self.relation_name(r, lang) for r in sorted(rels)}
        return labels


def joiner(lang: str) -> str:
    """How the parts of an appended fact are joined: nothing for unspaced scripts, else a space."""
    return "" if is_unspaced(lang) else " "
