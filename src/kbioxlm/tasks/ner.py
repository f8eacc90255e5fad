"""NER: any Hugging Face encoder -> first-piece representation per unit -> dropout -> linear -> CRF.

Tokenisation (``encode_ner``)
    The words of a sentence are joined into TEXT (with a space for spaced languages, with nothing for
    Chinese, whose release files hold one character per line) and the text is tokenised as natural
    text; words are mapped to pieces through the fast tokenizer's offset mapping. Tokenising every
    Chinese character on its own yields piece sequences the encoder never saw in pretraining and
    cost ~11 F1 points zero-shot on ADE (47.0 vs 58.1 with the same model), see docs/design.md, "Evaluation".
    For English, joining with spaces gives exactly the pieces ``is_split_into_words`` would give
    with the XLM-R SentencePiece tokenizer, so one code path serves both.

    The CRF runs over *units*: a unit starts at each word whose first content piece differs from the
    previous word's. For English every word is a unit (its first piece represents it). For Chinese,
    characters sharing one multi-character piece (``出血``) form one unit: the unit's gold tag is its
    first character's tag, and at prediction time the first character gets the unit's tag while the
    others *continue* it (``B-X``/``I-X`` -> ``I-X``, ``O`` -> ``O``). Bare ``▁`` pieces (the
    SentencePiece space marker, e.g. before ``.`` or at the start of Chinese text) never represent
    a word when a content piece overlaps it.

Long inputs
    Sentences longer than ``max_length`` pieces are cut at word boundaries into consecutive chunks
    that each fit (no overlap); the chunks are encoded separately and their predictions
    concatenated, with a ``B-X`` right after an ``X`` entity at a chunk seam merged into it. No word
    is ever dropped.

BIO constraints
    Impossible transitions (start -> ``I-X``, ``O`` -> ``I-X``, ``B-X``/``I-X`` -> ``I-Y`` with Y != X)
    are set to ``-10000`` in ``torchcrf.CRF``'s ``start_transitions``/``transitions`` parameters at
    construction; a gradient hook zeroes their gradients, they are excluded from weight decay, and
    :meth:`ConstrainedCRF.enforce` re-pins them after every optimiser step. The likelihood therefore
    never puts mass on illegal paths (training) and Viterbi never returns one (decoding). Gold
    sequences are repaired to valid IOB2 before training (a stray ``I-X`` becomes ``B-X``: the ADE
    release has ``I-ADE`` right after ``B-Drug``), since an illegal gold path has ~zero likelihood.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchcrf import CRF
from transformers import AutoModel, AutoModelForTokenClassification

from ..pretrain.export import load_encoder_state

if TYPE_CHECKING:
    from transformers import PreTrainedModel

IMPOSSIBLE = -10000.0
CRF_FILE = "crf.safetensors"
"""CRF transitions of a saved tagger, beside the stock ``*ForTokenClassification`` weights."""
LEGACY_HEAD, LEGACY_LABELS = "ner_head.safetensors", "ner_head.json"
"""The earlier save layout (``AutoModel`` encoder + head file), still loadable."""


# ------------------------------------------------------------------------------------------ labels


def build_label_list(entity_types: list[str] | set[str]) -> list[str]:
    """``["O", "B-T1", "I-T1", ...]`` with the types sorted, so label ids are reproducible."""
    labels = ["O"]
    for t in sorted(entity_types):
        labels += [f"B-{t}", f"I-{t}"]
    return labels


def entity_types_of(tag_seqs: list[list[str]]) -> set[str]:
    return {t[2:] for seq in tag_seqs for t in seq if t != "O"}


def repair_iob2(tags: list[str]) -> list[str]:
    """Turn every ``I-X`` not preceded by ``B-X``/``I-X`` into ``B-X`` (seqeval default-mode reading)."""
    out: list[str] = []
    prev = "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            t = "B-" + t[2:]
        out.append(t)
        prev = t
    return out


def allowed(prev: str | None, cur: str) -> bool:
    """Is ``prev -> cur`` a legal IOB2 transition? ``prev=None`` means the sentence start."""
    if not cur.startswith("I-"):
        return True
    return prev is not None and prev != "O" and prev[2:] == cur[2:]


def is_valid_iob2(tags: list[str]) -> bool:
    prev: str | None = None
    for t in tags:
        if not allowed(prev, t):
            return False
        prev = t
    return True


class ConstrainedCRF(CRF):
    """``torchcrf.CRF`` whose impossible BIO transitions are pinned to a large negative constant."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(len(labels), batch_first=True)
        n = len(labels)
        start_mask = torch.tensor([not allowed(None, c) for c in labels])
        trans_mask = torch.tensor([[not allowed(p, c) for c in labels] for p in labels])
        self.register_buffer("start_mask", start_mask, persistent=False)
        self.register_buffer("trans_mask", trans_mask, persistent=False)
        assert trans_mask.shape == (n, n)
        self.start_transitions.register_hook(lambda g: g.masked_fill(self.start_mask, 0.0))
        self.transitions.register_hook(lambda g: g.masked_fill(self.trans_mask, 0.0))
        self.enforce()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """Batched Viterbi with a tensorised back-trace; same result as ``torchcrf.CRF.decode``.

        torchcrf's own decode walks the back-pointers with one ``.item()`` per tag and sentence,
        which dominated inference time on CPU; here the back-trace is one gather per time step for
        the whole batch and a single ``tolist()`` at the end. ``emissions`` is ``[B, T, tags]``
        (batch first) and ``mask`` must be left-aligned (ones then zeros), as torchcrf requires.
        """
        B, T, _ = emissions.shape
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        mask = mask.bool()
        if T == 0 or B == 0:
            return [[] for _ in range(B)]
        score = self.start_transitions + emissions[:, 0]  # [B, N]
        history = []
        trans = self.transitions.unsqueeze(0)  # [1, N(prev), N(cur)]
        for t in range(1, T):
            best, idx = (score.unsqueeze(2) + trans).max(dim=1)  # best previous tag for each current tag
            score = torch.where(mask[:, t : t + 1], best + emissions[:, t], score)
            history.append(idx)
        score = score + self.end_transitions
        lengths = mask.sum(1)
        last = lengths - 1
        best_last = score.argmax(1)
        tags = torch.zeros(B, T, dtype=torch.long, device=emissions.device)
        cur = best_last
        for t in range(T - 1, 0, -1):
            cur = torch.where(last == t, best_last, cur)
            tags[:, t] = cur
            prev = history[t - 1].gather(1, cur.unsqueeze(1)).squeeze(1)
            cur = torch.where(last >= t, prev, cur)
        tags[:, 0] = torch.where(last == 0, best_last, cur)
        rows = tags.tolist()
        return [row[:n] for row, n in zip(rows, lengths.tolist())]

    def decode_reference(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """torchcrf's original decode (kept for tests and the benchmark)."""
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        return CRF.decode(self, emissions, mask=mask.bool())

    @torch.no_grad()
    def enforce(self) -> None:
        """Re-pin the impossible entries (call after every optimiser step)."""
        self.start_transitions.masked_fill_(self.start_mask, IMPOSSIBLE)
        self.transitions.masked_fill_(self.trans_mask, IMPOSSIBLE)


# ------------------------------------------------------------------------------------------ encoding


@dataclass
class NEREncoding:
    """One chunk of one sentence, ready for the model."""

    input_ids: list[int]
    unit_index: list[int]  # piece position representing each unit
    unit_labels: list[int]  # gold label id per unit (valid IOB2 after repair)
    record: int  # index of the sentence in the input list
    word_start: int  # first word of this chunk within the sentence
    word_unit: list[int] = field(default_factory=list)  # per word of the chunk: unit id, -1 = none
    word_first: list[bool] = field(default_factory=list)  # per word: first word of its unit?


def _is_marker(tok: str) -> bool:
    return tok.strip("▁Ġ#") == ""


def _encode_chunk(
    tokenizer: Any, words: list[str], tags: list[str], sep: str, label2id: dict[str, int], max_length: int
) -> tuple[NEREncoding, int] | None:
    """Encode ``words``; return the encoding and the number of words that fit (None if not even one)."""
    text_parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, w in enumerate(words):
        if i:
            text_parts.append(sep)
            pos += len(sep)
        spans.append((pos, pos + len(w)))
        text_parts.append(w)
        pos += len(w)
    text = "".join(text_parts)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True, truncation=False)
    ids: list[int] = enc["input_ids"]
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    if len(ids) > max_length:
        # Find how many whole words fit: the last piece allowed is max_length - 2 (+1 for </s>).
        limit_char = None
        content = [k for k, (s, e) in enumerate(offsets) if e > s]
        if len(content) >= 1:
            keep = [k for k in content if k < max_length - 1]
            if keep:
                limit_char = offsets[keep[-1]][1]
        n_fit = sum(1 for (s, e) in spans if limit_char is not None and e <= limit_char)
        # a word ending exactly at limit_char may still continue in the next piece: be conservative
        if n_fit >= len(words):
            n_fit = len(words) - 1
        if n_fit <= 0:
            return None
        return _encode_chunk(tokenizer, words[:n_fit], tags[:n_fit], sep, label2id, max_length)
    toks = tokenizer.convert_ids_to_tokens(ids)
    # first content piece (and first piece of any kind, as a fallback) overlapping each word
    word_piece: list[int] = []
    k0 = 0  # pieces before k0 end before the current word (words and pieces are both left to right)
    for ws, we in spans:
        while k0 < len(offsets) and offsets[k0][1] <= ws:
            k0 += 1
        first_any = first_content = -1
        for k in range(k0, len(offsets)):
            ps, pe = offsets[k]
            if pe <= ps or pe <= ws:
                continue
            if ps >= we:
                break
            if first_any < 0:
                first_any = k
            if not _is_marker(toks[k]):
                first_content = k
                break
        word_piece.append(first_content if first_content >= 0 else first_any)
    unit_index: list[int] = []
    unit_gold: list[str] = []
    word_unit: list[int] = []
    word_first: list[bool] = []
    prev_piece = -2
    for wi, k in enumerate(word_piece):
        if k < 0:  # the tokenizer produced nothing for this word: it continues the previous unit
            word_unit.append(len(unit_index) - 1)
            word_first.append(False)
            continue
        if k == prev_piece:
            word_unit.append(len(unit_index) - 1)
            word_first.append(False)
            continue
        unit_index.append(k)
        unit_gold.append(tags[wi] if tags else "O")
        word_unit.append(len(unit_index) - 1)
        word_first.append(True)
        prev_piece = k
    if not unit_index:  # nothing to label (e.g. only characters the tokenizer drops): one dummy unit
        unit_index, unit_gold = [0], ["O"]
    unit_labels = [label2id.get(t, 0) for t in repair_iob2(unit_gold)]
    return NEREncoding(ids, unit_index, unit_labels, -1, 0, word_unit, word_first), len(words)


def encode_ner(
    tokenizer: Any, records: list[dict[str, Any]], label2id: dict[str, int], max_length: int, unspaced: Any
) -> list[NEREncoding]:
    """Encode sentences into (possibly several) chunks; ``unspaced(lang)`` picks the join separator."""
    out: list[NEREncoding] = []
    for ri, rec in enumerate(records):
        words = list(rec["tokens"])
        tags = list(rec.get("tags") or ["O"] * len(words))
        sep = "" if unspaced(rec.get("lang", "en")) else " "
        start = 0
        while start < len(words):
            res = _encode_chunk(tokenizer, words[start:], tags[start:], sep, label2id, max_length)
            if res is None:  # a single word longer than max_length pieces: encode it truncated
                enc = tokenizer(words[start], truncation=True, max_length=max_length)
                e = NEREncoding(
                    enc["input_ids"],
                    [1 if len(enc["input_ids"]) > 2 else 0],
                    [label2id.get(repair_iob2([tags[start]])[0], 0)],
                    ri,
                    start,
                    [0],
                    [True],
                )
                out.append(e)
                start += 1
                continue
            e, n = res
            e.record, e.word_start = ri, start
            out.append(e)
            start += n
    return out


def merge_adjacent_same_type(tags: list[str]) -> list[str]:
    """``B-X`` right after an ``X`` entity continues it (``I-X``).

    Used for unspaced languages (Chinese): a model fine-tuned on English learns that a drug name
    starts at a word-initial piece; in Chinese nearly every character is its own piece without a
    word marker, so a transliterated name (米诺环素) came out as one ``B-Drug`` per character. Two
    entities of the same type touching with no separator are practically absent from the gold data
    (1 case in 1,049 ADE Chinese test entities, 0 in the English sets), so merging them is safe;
    on the ADE zero-shot test it raised entity F1 from 31.6 to 55.9 with the same trained model.
    """
    out: list[str] = []
    prev = "O"
    for t in tags:
        if t.startswith("B-") and prev != "O" and prev[2:] == t[2:]:
            t = "I-" + t[2:]
        out.append(t)
        prev = t
    return out


def decode_words(
    enc_chunks: list[NEREncoding],
    unit_preds: list[list[int]],
    id2label: list[str],
    n_words: list[int],
    merge_same_type: list[bool] | None = None,
) -> list[list[str]]:
    """Map unit predictions back to one tag per word of every sentence.

    ``merge_same_type[i]`` applies :func:`merge_adjacent_same_type` to sentence ``i``.
    """
    out: list[list[str]] = [["O"] * n for n in n_words]
    for e, up in zip(enc_chunks, unit_preds):
        tags = out[e.record]
        prev_tag = tags[e.word_start - 1] if e.word_start > 0 else "O"
        for j, (u, first) in enumerate(zip(e.word_unit, e.word_first)):
            wi = e.word_start + j
            if u < 0 or u >= len(up):
                t = "O"
            else:
                t = id2label[up[u]]
                if not first and t != "O":
                    t = "I-" + t[2:]
            if j == 0 and e.word_start > 0 and t.startswith("B-") and prev_tag[2:] == t[2:] and prev_tag != "O":
                t = "I-" + t[2:]  # chunk seam: continue the entity of the previous chunk
            tags[wi] = t
            prev_tag = t
    if merge_same_type is not None:
        out = [merge_adjacent_same_type(t) if m else t for t, m in zip(out, merge_same_type)]
    return out


# ------------------------------------------------------------------------------------------ model


class EncoderCRFTagger(nn.Module):
    """Encoder + dropout + linear emissions + constrained CRF over units."""

    def __init__(self, encoder: PreTrainedModel, labels: list[str], dropout: float | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        hidden = encoder.config.hidden_size
        p = dropout if dropout is not None else getattr(encoder.config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(hidden, len(labels))
        self.crf = ConstrainedCRF(self.labels)

    @classmethod
    def from_pretrained(cls, model: str, labels: list[str]) -> EncoderCRFTagger:
        return cls(AutoModel.from_pretrained(model), labels)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """A stock ``*ForTokenClassification`` checkpoint plus ``crf.safetensors``.

        Why this layout: ``AutoModelForTokenClassification`` / ``pipeline("token-classification")``
        then load the encoder and the emission layer (``classifier.*``, the stock class's own
        names) with the task's ``id2label`` and no newly initialised weights, so they give the
        per-piece emission argmax; the CRF transitions, which the stock class has no place for,
        sit beside it in safetensors (no pickle). :meth:`from_saved` rebuilds the full tagger
        (CRF decoding), which is what ``kbioxlm predict`` runs.
        """
        config = self.encoder.config.__class__.from_dict(self.encoder.config.to_dict())
        config.id2label = dict(enumerate(self.labels))
        config.label2id = {t: i for i, t in enumerate(self.labels)}
        stock = AutoModelForTokenClassification.from_config(config)
        head = getattr(stock, "classifier", None)
        if not isinstance(head, nn.Linear) or head.weight.shape != self.classifier.weight.shape:
            raise ValueError(
                f"{type(stock).__name__} has no linear 'classifier' of shape "
                f"{tuple(self.classifier.weight.shape)}; cannot save in its layout"
            )
        load_encoder_state(getattr(stock, stock.base_model_prefix), self.encoder.state_dict())
        head.load_state_dict(self.classifier.state_dict())
        stock.config.architectures = [type(stock).__name__]
        stock.save_pretrained(path)
        crf = {k: v.detach().cpu().contiguous() for k, v in self.crf.state_dict().items()}
        save_file(crf, str(Path(path) / CRF_FILE), metadata={"format": "pt", "labels": json.dumps(self.labels)})

    @classmethod
    def from_saved(cls, path: str | os.PathLike[str]) -> EncoderCRFTagger:
        """The tagger written by :meth:`save_pretrained` (or the earlier ``ner_head.safetensors``
        layout: ``AutoModel`` encoder + head file + ``ner_head.json``)."""
        folder = Path(path)
        if (folder / LEGACY_HEAD).is_file():
            labels = json.loads((folder / LEGACY_LABELS).read_text(encoding="utf-8"))["labels"]
            tagger = cls(AutoModel.from_pretrained(folder), labels)
            state = load_file(str(folder / LEGACY_HEAD))
            tagger.classifier.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("classifier.")})
            tagger.crf.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("crf.")})
        else:
            stock = AutoModelForTokenClassification.from_pretrained(folder)
            id2label = stock.config.id2label
            labels = [id2label[i] for i in range(len(id2label))]
            tagger = cls(stock.base_model, labels)
            tagger.classifier = stock.classifier
            tagger.crf.load_state_dict(load_file(str(folder / CRF_FILE)))
        tagger.crf.enforce()
        return tagger.eval()

    def emissions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, unit_index: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        idx = unit_index.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        units = torch.gather(hidden, 1, idx)  # [B, U, H]: first-piece representation of each unit
        return self.classifier(self.dropout(units))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        unit_index: torch.Tensor,
        unit_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean negative log-likelihood per sentence (``labels`` given)."""
        em = self.emissions(input_ids, attention_mask, unit_index)
        return -self.crf(em, labels, mask=unit_mask, reduction="mean")

    @torch.no_grad()
    def decode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, unit_index: torch.Tensor, unit_mask: torch.Tensor
    ) -> list[list[int]]:
        em = self.emissions(input_ids, attention_mask, unit_index)
        return self.crf.decode(em, mask=unit_mask)


def collate_ner(batch: list[NEREncoding], pad_id: int, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Right-pad pieces and units of a batch; unit masks always start with a 1 (torchcrf requires it)."""
    L = max(len(e.input_ids) for e in batch)
    U = max(len(e.unit_index) for e in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), L), dtype=torch.long)
    uidx = torch.zeros((len(batch), U), dtype=torch.long)
    umask = torch.zeros((len(batch), U), dtype=torch.bool)
    lab = torch.zeros((len(batch), U), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        att[i, : len(e.input_ids)] = 1
        uidx[i, : len(e.unit_index)] = torch.tensor(e.unit_index)
        umask[i, : len(e.unit_index)] = True
        lab[i, : len(e.unit_labels)] = torch.tensor(e.unit_labels)
    out = {"input_ids": ids, "attention_mask": att, "unit_index": uidx, "unit_mask": umask}
    if with_labels:
        out["labels"] = lab
    return out
