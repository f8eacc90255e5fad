"""Sequence classification for RE (GAD) and DC (HoC) with ``AutoModelForSequenceClassification``.

* RE: two classes, cross-entropy. The ``@GENE$`` / ``@DISEASE$`` placeholders are kept verbatim and
  the tokenizer is left unchanged (no added special tokens): new embeddings would be trained on the
  source language only, and keeping the vocabulary as pretrained is what lets the same markers
  transfer zero-shot to the Chinese test set, where they appear identically.
* DC: multi-label over the HoC hallmarks. ``problem_type="multi_label_classification"`` is set
  explicitly (so transformers uses BCE-with-logits even when a batch happens to look single-label),
  and a label is predicted when its sigmoid is >= 0.5.

Texts longer than ``max_length`` pieces are truncated (HoC abstracts: the head of the abstract is
kept); the truncation count is logged by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class SeqClsEncoding:
    input_ids: list[int]
    label: int | list[int]
    truncated: bool


def encode_seqcls(tokenizer: Any, records: list[dict[str, Any]], max_length: int) -> list[SeqClsEncoding]:
    out: list[SeqClsEncoding] = []
    texts = [r["text"] for r in records]
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    for rec, ids in zip(records, full):
        truncated = len(ids) > max_length
        if truncated:  # keep <s> ... </s>: head of the text plus the closing special token
            ids = ids[: max_length - 1] + ids[-1:]
        out.append(SeqClsEncoding(ids, rec["label"], truncated))
    return out


def collate_seqcls(batch: list[SeqClsEncoding], pad_id: int, multilabel: bool) -> dict[str, torch.Tensor]:
    L = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), L), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        att[i, : len(e.input_ids)] = 1
    if multilabel:
        labels = torch.tensor([e.label for e in batch], dtype=torch.float)
    else:
        labels = torch.tensor([e.label for e in batch], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": att, "labels": labels}


def build_seqcls_model(model: str, num_labels: int, multilabel: bool) -> Any:
    """Load any encoder with a fresh classification head of ``num_labels`` outputs."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model)
    config.num_labels = num_labels
    config.problem_type = "multi_label_classification" if multilabel else "single_label_classification"
    return AutoModelForSequenceClassification.from_pretrained(model, config=config)


@torch.no_grad()
def predict_seqcls(logits: torch.Tensor, multilabel: bool, threshold: float = 0.5) -> tuple[list[Any], list[Any]]:
    """Predicted labels and scores (class probabilities / per-label sigmoids) from logits."""
    if multilabel:
        probs = torch.sigmoid(logits)
        return (probs >= threshold).long().tolist(), probs.tolist()
    probs = torch.softmax(logits, dim=-1)
    return probs.argmax(-1).tolist(), probs.tolist()
