"""Dynamic masking for the four pretraining tasks (docs/design.md, "Pretraining";
paper 3.1-3.2, A.1).

Records carry character spans (entities, relations); the collator maps them to token positions
through the fast tokenizer's ``offset_mapping``, so the same records serve any fast tokenizer
(XLM-R sentencepiece, BERT-style with the XLM-R vocabulary, ...). Masks are drawn at collate time
(dynamic masking) from one seeded ``numpy.random.Generator`` per collator whose state is saved in
checkpoints, so a resumed run draws exactly the masks an uninterrupted run would have drawn.

Why not ``transformers.DataCollatorForWholeWordMask``: it knows neither entity spans nor relation
spans nor sentence pairs with a pair label, it finds words from ``##`` pieces only (not ``▁``
pieces or jieba words), and it draws from the global torch RNG, which makes resuming inexact.
The 80/10/10 replacement rule is the same as BERT's / the HF collator's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, cast

import jieba
import numpy as np

from ..schema import PASSAGE_LABELS, is_unspaced
from . import PRETRAIN_TASKS

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


def record_task(rec: dict[str, Any]) -> str:
    """Task of a record: its ``task`` field, or ``mlm`` for a plain Document."""
    return rec.get("task") or "mlm"


class _Jieba:
    """Lazily created jieba tokenizer (loading its dictionary costs ~1 s; only Chinese needs it)."""

    _tok = None

    @classmethod
    def spans(cls, text: str) -> list[tuple[int, int]]:
        if cls._tok is None:
            jieba.setLogLevel(logging.WARNING)
            cls._tok = jieba.Tokenizer()
        return [(s, e) for _, s, e in cls._tok.tokenize(text)]


class KnowledgeCollator:
    """Turn a list of pretraining records into a masked batch.

    Returns ``input_ids``, ``attention_mask`` (B, T), ``mlm_labels`` (B, T: the original FULL
    vocabulary id at masked positions, -100 elsewhere), ``task_ids`` (B,) and ``pair_labels`` (B,:
    positive/random/context -> 0/1/2, -100 for non-passage records).

    * Document (no ``task``): whole-word and whole-entity masking, ``wwm_entity_ratio`` of the
      ``mlm_probability`` budget goes to entities (paper A.1: 1:1) when the document has
      ``entities`` spans; words are ``▁``-initial piece groups (``##`` continuation for WordPiece)
      or jieba words for Chinese/Japanese/... text.
    * ``entity``: whole entities, ``mlm_probability`` of the entity tokens (paper 3.1.2).
    * ``fact``: every relation span, plus whole entities at ``mlm_probability`` of entity tokens
      (paper 3.1.3: "we will mask the relationship"; docs/design.md: "plus entities").
    * ``passage``: the pair label, plus whole-word MLM over both passages.

    * ``align``: one name per language of the record's concept (a synonym drawn at random, two
      languages drawn when it has more), each side tokenized on its own; the batch gets
      ``align_a_ids``/``align_a_mask``/``align_b_ids``/``align_b_mask`` (``*_mask`` is 1 on the
      name's pieces, 0 on special tokens and padding: the model mean-pools over it) and no MLM rows.

    Masked positions get the tokenizer's real ``mask_token_id`` 80% of the time, a random token 10%
    and stay unchanged 10%, decided once per masked *unit* (``mask_decision="unit"``: a whole
    entity or word is either all ``<mask>``, all random or all visible, so no piece of a masked
    entity leaks) or per token (``"token"``, BERT's original rule). ``max_entity_tokens`` skips
    longer entities as masking units (paper A.1 limits masked entities to 3 tokens); they can still
    be masked word by word in Documents. ``entity_window`` chooses where an over-long entity record
    is cut: ``"switched"`` places the window where it holds the most code-switched spans whole
    (a window from the first match drops about half the switches), ``"first"`` starts at the first
    entity.
    """

    def __init__(
        self,
        tokenizer: Any,
        max_length: int = 128,
        mlm_probability: float = 0.15,
        wwm_entity_ratio: float = 0.5,
        max_entity_tokens: int | None = None,
        seed: int = 0,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        random_token_ids: Sequence[int] | None = None,
        pad_to_multiple_of: int | None = None,
        random_window: bool = True,
        mask_decision: str = "unit",
        entity_window: str = "switched",
        align_max_length: int = 32,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("KnowledgeCollator needs a fast tokenizer (offset mapping); got a slow one")
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no mask or pad token")
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if not 0.0 <= wwm_entity_ratio <= 1.0:
            raise ValueError(f"wwm_entity_ratio must be in [0, 1], got {wwm_entity_ratio}")
        if mask_replace_prob + random_replace_prob > 1.0:
            raise ValueError("mask_replace_prob + random_replace_prob must be <= 1")
        if mask_decision not in ("unit", "token"):
            raise ValueError(f"mask_decision must be 'unit' or 'token', got {mask_decision!r}")
        if entity_window not in ("switched", "first"):
            raise ValueError(f"entity_window must be 'switched' or 'first', got {entity_window!r}")
        self.mask_decision = mask_decision
        self.entity_window = entity_window
        self.align_max_length = int(align_max_length)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.mlm_probability = float(mlm_probability)
        self.wwm_entity_ratio = float(wwm_entity_ratio)
        self.max_entity_tokens = int(max_entity_tokens) if max_entity_tokens else None
        self.mask_replace_prob = float(mask_replace_prob)
        self.random_replace_prob = float(random_replace_prob)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.random_window = random_window
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        special = set(tokenizer.all_special_ids)
        if random_token_ids is None:
            random_token_ids = [i for i in range(len(tokenizer)) if i not in special]
        else:
            random_token_ids = [int(i) for i in random_token_ids if int(i) not in special]
        self.random_token_ids = np.asarray(random_token_ids, dtype=np.int64)
        # How the tokenizer marks a word start: sentencepiece "▁" prefix, or WordPiece "##" continuation.
        probe = tokenizer.convert_ids_to_tokens(tokenizer("biomedical words", add_special_tokens=False)["input_ids"])
        self._wordpiece = any(p.startswith("##") for p in probe) and not any(p.startswith("▁") for p in probe)

    # ------------------------------------------------------------------ state (exact resume)
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable RNG state; saved with every checkpoint."""
        return {"seed": self.seed, "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    # ------------------------------------------------------------------ batch
    def __call__(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not records:
            raise ValueError("empty batch")
        align = [r for r in records if record_task(r) == "align"]
        others = [r for r in records if record_task(r) != "align"]
        batch: dict[str, Any] = self._align_batch(align) if align else {}
        if others:
            batch.update(self._mlm_batch(others))
        return batch

    def _mlm_batch(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch  # lazy: torch; `kbioxlm pretrain --help` loads this module (through the trainer)

        feats = [self.encode(r) for r in records]
        longest = max(len(f["input_ids"]) for f in feats)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = min(self.max_length, ((longest + m - 1) // m) * m) if longest <= self.max_length else longest
        pad = self.tokenizer.pad_token_id
        n = len(feats)
        input_ids = torch.full((n, longest), pad, dtype=torch.long)
        attention = torch.zeros((n, longest), dtype=torch.long)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        for i, f in enumerate(feats):
            k = len(f["input_ids"])
            input_ids[i, :k] = torch.as_tensor(f["input_ids"])
            attention[i, :k] = 1
            labels[i, :k] = torch.as_tensor(f["mlm_labels"])
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "mlm_labels": labels,
            "task_ids": torch.tensor([f["task_id"] for f in feats], dtype=torch.long),
            "pair_labels": torch.tensor([f["pair_label"] for f in feats], dtype=torch.long),
        }

    def _align_batch(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Two padded sides of name pairs: row i of side a and row i of side b name one concept."""
        sides: tuple[list[str], list[str]] = ([], [])
        for rec in records:
            names = {lang: [n for n in ns if isinstance(n, str) and n.strip()] for lang, ns in rec["names"].items()}
            langs = sorted(lang for lang, ns in names.items() if ns)
            if len(langs) < 2:
                raise ValueError(f"align record {rec.get('id')!r} needs names in two languages")
            if len(langs) > 2:
                pick = self.rng.choice(len(langs), size=2, replace=False)
                langs = sorted(langs[int(i)] for i in pick)
            for side, lang in zip(sides, langs):
                options = names[lang]
                side.append(options[int(self.rng.integers(0, len(options)))])
        out: dict[str, Any] = {}
        for key, texts in (("a", sides[0]), ("b", sides[1])):
            enc = self.tokenizer(
                texts,
                truncation=True,
                max_length=self.align_max_length,
                padding=True,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            pool = enc["attention_mask"] * (1 - enc["special_tokens_mask"])
            out[f"align_{key}_ids"] = enc["input_ids"]
            out[f"align_{key}_attention"] = enc["attention_mask"]
            out[f"align_{key}_mask"] = pool
        return out

    # ------------------------------------------------------------------ one record
    def encode(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Tokenize and mask one record; returns lists (``input_ids``, ``mlm_labels``) and ids."""
        task = record_task(rec)
        if task == "passage":
            return self._encode_pair(rec)
        text = rec["text"]
        lang = rec.get("lang", "en")
        enc, shift = self._encode_single(text, rec, task)
        ids: list[int] = list(enc["input_ids"])
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        special = list(enc["special_tokens_mask"])
        # A token's span relative to the full text; special tokens get None.
        spans = [None if special[i] else (offsets[i][0] + shift, offsets[i][1] + shift) for i in range(len(ids))]
        entities = [self._span_tokens(e, spans) for e in _valid_spans(rec.get("entities"), len(text))]
        entities = [u for u in entities if u]
        if task == "mlm":
            words = self._word_units(ids, spans, text, lang)
            chosen = self._choose_mlm(words, entities, n_tokens=sum(s is not None for s in spans))
        elif task == "entity":
            chosen = self._choose_entities(entities)
        elif task == "fact":
            rel_units = [self._span_tokens(r, spans) for r in _valid_spans(rec.get("relations"), len(text))]
            chosen = [u for u in rel_units if u]
            taken = {t for u in chosen for t in u}
            chosen += self._choose_entities([u for u in entities if not taken.intersection(u)])
        else:
            raise ValueError(f"unknown task {task!r}")
        labels = self._apply_mask(ids, chosen)
        return {
            "input_ids": ids,
            "mlm_labels": labels,
            "task_id": PRETRAIN_TASKS.index(task),
            "pair_label": IGNORE_INDEX,
        }

    def _encode_single(self, text: str, rec: dict[str, Any], task: str) -> tuple[Any, int]:
        """Encode ``text`` within ``max_length``; returns the encoding and its character shift.

        Over-long texts are cut at token boundaries and the cut is re-encoded: a fact record keeps
        its end (the appended fact lies there), a Document a random window (dynamic, so every part
        of a long document is seen over epochs), an entity record a window from its first entity.
        """
        tok = self.tokenizer
        full = tok(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        if len(full["input_ids"]) <= self.max_length:
            return full, 0
        budget = self.max_length - tok.num_special_tokens_to_add(pair=False)
        offs = [o for o, sp in zip(full["offset_mapping"], full["special_tokens_mask"]) if not sp]
        if task == "fact":
            # Keep the end of the last fact: its relation and both arguments (head/tail entities).
            ents = rec.get("entities") or []
            rel_end = 0
            for r in _valid_spans(rec.get("relations"), len(text)):
                rel_end = max(rel_end, r["end"])
                for k in ("head", "tail"):
                    i = r.get(k)
                    if isinstance(i, int) and 0 <= i < len(ents) and _valid_spans([ents[i]], len(text)):
                        rel_end = max(rel_end, ents[i]["end"])
            rel_end = rel_end or len(text)
            last = max((i for i, o in enumerate(offs) if o[0] < rel_end), default=len(offs) - 1)
            first = max(0, last + 1 - budget)
        elif task == "entity":
            first = self._entity_window_start(rec, text, offs, budget)
        elif self.random_window:
            first = int(self.rng.integers(0, len(offs) - budget + 1))
        else:
            first = 0
        # Never start a window inside a word (its tail would be re-tokenized as a fake word).
        if not is_unspaced(rec.get("lang", "en")):
            starts_word = [i for i in range(first, len(offs)) if offs[i][0] == 0 or text[offs[i][0] - 1].isspace()]
            first = starts_word[0] if starts_word else first
        start_char = offs[first][0]
        # Re-encode the cut text (the tokenizer decides the final pieces); still cap at max_length.
        sub = text[start_char:]
        enc = tok(
            sub,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        return enc, start_char

    def _entity_window_start(self, rec: dict[str, Any], text: str, offs: list[Any], budget: int) -> int:
        """First token of an entity record's window of ``budget`` tokens.

        ``first``: from the first entity. ``switched``: the start that holds the most switched
        spans whole (the earliest such start; deterministic, no RNG draw); without switched spans,
        as ``first``.
        """
        ents = _valid_spans(rec.get("entities"), len(text))
        last_start = len(offs) - budget

        def token_of(char: int) -> int:
            return next((i for i, o in enumerate(offs) if o[1] > char), len(offs) - 1)

        starts = sorted(e["start"] for e in ents)
        first = min(token_of(starts[0]) if starts else 0, last_start)
        if self.entity_window == "first":
            return first
        spans = sorted((token_of(e["start"]), token_of(e["end"] - 1)) for e in ents if e.get("switched"))
        if not spans:
            return first
        best, best_n = first, -1
        for a, _ in spans:
            cand = min(a, last_start)
            n = sum(1 for s, e in spans if s >= cand and e < cand + budget)
            if n > best_n:
                best, best_n = cand, n
        return best

    def _encode_pair(self, rec: dict[str, Any]) -> dict[str, Any]:
        tok = self.tokenizer
        enc = tok(
            rec["text_a"],
            rec["text_b"],
            truncation="longest_first",
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        ids = list(enc["input_ids"])
        seq = enc.sequence_ids()
        offsets = enc["offset_mapping"]
        units: list[list[int]] = []
        for side, key, lkey in ((0, "text_a", "lang_a"), (1, "text_b", "lang_b")):
            idx = [i for i in range(len(ids)) if seq[i] == side and not enc["special_tokens_mask"][i]]
            spans: list[tuple[int, int] | None] = [None] * len(ids)
            for i in idx:
                spans[i] = tuple(offsets[i])
            units += self._word_units(ids, spans, rec[key], rec.get(lkey, "en"))
        n_tokens = sum(len(u) for u in units)
        chosen = self._fill(units, self._budget(n_tokens))
        labels = self._apply_mask(ids, chosen)
        label = PASSAGE_LABELS.index(rec["label"])
        return {"input_ids": ids, "mlm_labels": labels, "task_id": PRETRAIN_TASKS.index("passage"), "pair_label": label}

    # ------------------------------------------------------------------ units
    @staticmethod
    def _span_tokens(span: dict[str, Any], spans: list[tuple[int, int] | None]) -> list[int]:
        """Token positions whose characters overlap ``[start, end)``.

        Empty when the span was cut by the length window: a half-present entity is not a whole
        unit, and masking its visible half would teach the model truncated names.
        """
        s, e = span["start"], span["end"]
        content = [i for i, sp in enumerate(spans) if sp is not None and sp[1] > sp[0]]
        present = cast("list[tuple[int, int]]", spans)  # read only at positions whose span is not None
        out = [i for i in content if present[i][0] < e and present[i][1] > s]
        if not out:
            return []
        if (out[-1] == content[-1] and present[out[-1]][1] < e) or (out[0] == content[0] and present[out[0]][0] > s):
            return []
        # zero-width pieces (the bare sentencepiece "▁" before CJK) right before the span belong to it
        first = out[0]
        while (
            first - 1 >= 0
            and spans[first - 1] is not None
            and present[first - 1][0] == present[out[0]][0]
            and first - 1 not in out
        ):
            first -= 1
        return list(range(first, out[0])) + out

    def _word_units(self, ids: list[int], spans: list[tuple[int, int] | None], text: str, lang: str) -> list[list[int]]:
        """Group token positions into whole words.

        Space-delimited text: a word starts at a ``▁``-initial piece (sentencepiece) or at any
        piece not starting with ``##`` (WordPiece), as in whole-word masking (Cui et al., 2021).
        Chinese and other unspaced scripts: jieba words, mapped to tokens through the offsets; a
        token crossing a word boundary merges the words it touches, so units never split a token.
        """
        positions = [i for i, sp in enumerate(spans) if sp is not None]
        if not positions:
            return []
        present = cast("list[tuple[int, int]]", spans)  # read only at `positions`
        units: list[list[int]] = []
        if is_unspaced(lang):
            lo = min(present[i][0] for i in positions)
            hi = max(present[i][1] for i in positions)
            char_word = {}
            for w, (s, e) in enumerate(_Jieba.spans(text[lo:hi])):
                for c in range(s + lo, e + lo):
                    char_word[c] = w
            last_word = -1
            for i in positions:
                s, e = present[i]
                if e <= s:  # zero-width piece: attach to the current unit
                    if units:
                        units[-1].append(i)
                    else:
                        units.append([i])
                    continue
                words = [char_word.get(c, -1) for c in range(s, e)]
                w_lo, w_hi = min(words), max(words)
                if units and w_lo <= last_word:
                    units[-1].append(i)
                else:
                    units.append([i])
                last_word = max(last_word, w_hi)
            # A lone "▁" piece (sentencepiece before CJK) shares its character with the next token.
            return _merge_bare_prefix(units, ids, self.tokenizer)
        pieces = self.tokenizer.convert_ids_to_tokens([ids[i] for i in positions])
        prev = None
        for i, piece in zip(positions, pieces):
            if self._wordpiece:
                starts = not piece.startswith("##")
            else:
                starts = piece.startswith("▁")
            contiguous = prev is not None and prev == i - 1
            if starts or not units or not contiguous:
                units.append([i])
            else:
                units[-1].append(i)
            prev = i
        return units

    # ------------------------------------------------------------------ selection
    def _budget(self, n_tokens: int) -> int:
        """Number of tokens to mask: ``mlm_probability`` of ``n_tokens``, at least one.

        Probabilistic rounding keeps the expected rate exact on short inputs (a 5-token text masks
        one token 75% of the time rather than always or never).
        """
        if n_tokens <= 0:
            return 0
        x = self.mlm_probability * n_tokens
        k = int(math.floor(x)) + int(self.rng.random() < x - math.floor(x))
        return max(1, k)

    def _fill(
        self,
        units: list[list[int]],
        budget: float,
        taken: set[int] | None = None,
        must_pick: bool = True,
        stochastic: bool = False,
    ) -> list[list[int]]:
        """Pick whole units in random order while they fit the budget.

        With ``must_pick`` the first unit drawn is taken even if longer than the budget, so every
        example contributes at least one masked unit (a short text with one long word). With
        ``stochastic`` a unit that does not fit the rest ``r`` of the budget is taken with
        probability ``r / len(unit)`` (then filling stops): whole units, yet the expected number
        of masked tokens equals the budget (keeps the entity : word ratio at 1:1 on short texts).
        """
        taken = set() if taken is None else taken
        chosen: list[list[int]] = []
        used = 0
        if budget <= 0 or not units:
            return chosen
        for j in self.rng.permutation(len(units)):
            if used >= budget:
                break
            u = units[int(j)]
            if taken.intersection(u):
                continue
            if used + len(u) > budget:
                if stochastic:
                    if self.rng.random() < (budget - used) / len(u):
                        chosen.append(u)
                        taken.update(u)
                    break
                if not (must_pick and not chosen):
                    continue
            chosen.append(u)
            taken.update(u)
            used += len(u)
        return chosen

    def _entity_units(self, entities: list[list[int]]) -> list[list[int]]:
        if self.max_entity_tokens is None:
            return entities
        return [u for u in entities if len(u) <= self.max_entity_tokens]

    def _choose_entities(self, entities: list[list[int]]) -> list[list[int]]:
        units = _dedupe(self._entity_units(entities))
        n = sum(len(u) for u in units)
        return self._fill(units, self._budget(n))

    def _choose_mlm(self, words: list[list[int]], entities: list[list[int]], n_tokens: int) -> list[list[int]]:
        """Whole-entity then whole-word masking sharing one budget (``wwm_entity_ratio`` to entities)."""
        budget = self._budget(n_tokens)
        units = _dedupe(self._entity_units(entities))
        taken: set[int] = set()
        chosen: list[list[int]] = []
        if units and self.wwm_entity_ratio > 0:
            chosen = self._fill(units, budget * self.wwm_entity_ratio, taken, must_pick=False, stochastic=True)
        used = sum(len(u) for u in chosen)
        if budget - used > 0:
            # Entities are masked whole or not at all: words touching an entity unit are not
            # word-level candidates (an entity is not half-masked by the word pass).
            in_entity = {t for u in units for t in u}
            free = [w for w in words if not in_entity.intersection(w)] if units else words
            chosen += self._fill(free, budget - used, taken, must_pick=not chosen)
        return chosen

    def _apply_mask(self, ids: list[int], chosen: list[list[int]]) -> list[int]:
        """80/10/10 replacement in place on ``ids``; returns the labels list."""
        labels = [IGNORE_INDEX] * len(ids)
        positions = sorted({p for u in chosen for p in u})
        if not positions:
            return labels
        if self.mask_decision == "unit":
            # One draw per unit, shared by its pieces (units never overlap: _fill keeps them apart).
            unit_draw = {p: r for u, r in zip(chosen, self.rng.random(len(chosen))) for p in u}
            draws = np.array([unit_draw[p] for p in positions])
        else:
            draws = self.rng.random(len(positions))
        randoms = self.random_token_ids[self.rng.integers(0, len(self.random_token_ids), len(positions))]
        mask_id = self.tokenizer.mask_token_id
        for p, r, rnd in zip(positions, draws, randoms):
            labels[p] = ids[p]
            if r < self.mask_replace_prob:
                ids[p] = mask_id
            elif r < self.mask_replace_prob + self.random_replace_prob:
                ids[p] = int(rnd)
        return labels


def _valid_spans(spans: Any, text_len: int) -> list[dict[str, Any]]:
    """Spans with sane offsets (Documents' optional ``entities`` are not schema-checked)."""
    out = []
    for sp in spans or []:
        if isinstance(sp, dict):
            s, e = sp.get("start"), sp.get("end")
            if isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= text_len:
                out.append(sp)
    return out


def _dedupe(units: list[list[int]]) -> list[list[int]]:
    seen: set[tuple[int, ...]] = set()
    out = []
    for u in units:
        key = tuple(u)
        if key not in seen:
            seen.add(key)
            out.append(u)
    return out


def _merge_bare_prefix(units: list[list[int]], ids: list[int], tokenizer: Any) -> list[list[int]]:
    """Join a unit made only of the bare ``▁`` piece with the next unit (they cover one character)."""
    bare = tokenizer.convert_tokens_to_ids("▁")
    if bare is None or bare == tokenizer.unk_token_id:
        return units
    out: list[list[int]] = []
    carry: list[int] = []
    for u in units:
        if len(u) == 1 and ids[u[0]] == bare:
            carry += u
            continue
        out.append(carry + u)
        carry = []
    if carry:
        out.append(carry)
    return out
