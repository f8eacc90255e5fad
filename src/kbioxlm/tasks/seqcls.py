"""Sequence classification for RE (GAD) and DC (HoC) with ``AutoModelForSequenceClassification``.

* RE: two classes, cross-entropy. The ``@GENE$`` / ``@DISEASE$`` placeholders are kept verbatim and
  the tokenizer is left unchanged (no added special tokens): new embeddings would be trained on the
  source language only, and keeping the vocabulary as pretrained is what lets the same markers
  transfer zero-shot to the Chinese test set, where they appear identically.
* DC: multi-label over the HoC hallmarks. ``problem_type="multi_label_classification"`` is set
  explicitly (so transformers uses BCE-with-logits even when a batch happens to look single-label),
  and a label is predicted when its sigmoid is >= 0.5.

Two heads (``FinetuneConfig.head``):

* ``model``: the architecture's own head (``AutoModelForSequenceClassification``: BERT's pooler on
  the first token, XLM-R's dense + out_proj), as the paper uses.
* ``normalized``: masked mean of the last hidden states, standardised per dimension with running
  batch statistics (``BatchNorm1d`` without affine), dropout, linear. Encoders trained for sentence
  embeddings (e5) give pooled vectors that differ between inputs by ~2% of their norm along every
  dimension; a fresh linear head sees nearly constant input and, on a few hundred examples, learns
  only the label prior (HoC micro-F1 0 with the ``model`` head). Measured on 300 HoC abstracts with
  frozen e5-small features and the same Adam budget: micro-F1 0 raw vs 37 standardised.

Texts longer than ``max_length`` pieces are truncated (HoC abstracts: the head of the abstract is
kept); the truncation count is logged by the trainer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from ..pretrain.export import load_encoder_state

HEAD_FILE = "seqcls_head.safetensors"
"""The exact ``normalized`` head (running statistics + linear), beside the stock-layout weights."""
LEGACY_INFO = "seqcls_head.json"
"""Settings file of the earlier ``normalized`` save layout (``AutoModel`` encoder + head file)."""


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


def build_seqcls_model(
    model: str, num_labels: int, multilabel: bool, classifier_dropout: float | None = None
) -> tuple[Any, set[str]]:
    """Load any encoder with a fresh classification head of ``num_labels`` outputs.

    Also returns the names of the parameters the checkpoint did not provide, so the trainer can give
    the randomly initialised ones their own learning rate."""
    config = AutoConfig.from_pretrained(model)
    config.num_labels = num_labels
    config.problem_type = "multi_label_classification" if multilabel else "single_label_classification"
    if classifier_dropout is not None:
        config.classifier_dropout = classifier_dropout
    loaded, info = AutoModelForSequenceClassification.from_pretrained(model, config=config, output_loading_info=True)
    return loaded, set(info.get("missing_keys", ()))


@dataclass
class SeqClsOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


class NormalizedPoolingClassifier(torch.nn.Module):
    """Encoder -> masked mean -> per-dimension standardisation -> dropout -> linear (see module doc)."""

    def __init__(self, encoder: Any, num_labels: int, multilabel: bool, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.multilabel = multilabel
        hidden = encoder.config.hidden_size
        self.norm = torch.nn.BatchNorm1d(hidden, affine=False)
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden, num_labels)

    def running_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The standardisation's running mean and variance (always kept: ``track_running_stats``)."""
        mean, var = self.norm.running_mean, self.norm.running_var
        assert mean is not None and var is not None
        return mean, var

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    @contextmanager
    def statistics_of(self, batches: Iterable[dict[str, torch.Tensor]]) -> Iterator[None]:
        """Standardise with the mean and variance of these inputs' pooled vectors while the block
        runs (AdaBN, Li et al. 2016), then restore the training statistics.

        Why: in zero-shot transfer the statistics come from the source language, and another
        language's pooled vectors can sit far from them. Measured on GAD ZH->EN with the
        e2e-pretrained model: English test vectors 1.67 running standard deviations from the
        Chinese running mean per dimension (Chinese dev: 0.29); F1 2.8 with the training
        statistics, 59.1 with the test set's own. Uses the evaluated set's inputs, never labels.
        """
        mean, var = self.running_stats()
        saved = (mean.clone(), var.clone())
        with torch.no_grad():
            pooled = torch.cat([self.pool(b["input_ids"], b["attention_mask"]) for b in batches])
            if pooled.shape[0] > 1:
                mean.copy_(pooled.mean(0))
                var.copy_(pooled.var(0))
        try:
            yield
        finally:
            mean.copy_(saved[0])
            var.copy_(saved[1])

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> SeqClsOutput:
        pooled = self.pool(input_ids, attention_mask)
        if self.training and pooled.shape[0] == 1:  # batch statistics need two rows: use the running ones
            self.norm.eval()
            z = self.norm(pooled)
            self.norm.train()
        else:
            z = self.norm(pooled)
        logits = self.classifier(self.dropout(z))
        loss = None
        if labels is not None:
            if self.multilabel:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
        return SeqClsOutput(loss, logits)

    def save_pretrained(self, path: str | os.PathLike[str], id2label: dict[int, str] | None = None) -> None:
        """The stock ``*ForSequenceClassification`` layout plus ``seqcls_head.safetensors``.

        Why: the stock class and ``pipeline("text-classification")`` then find the task's labels
        (``id2label``, ``problem_type``) and the encoder. The stock head pools differently
        (BERT: pooler on ``[CLS]``), so it cannot *be* this head; where the stock head is one
        linear layer (BERT family) it gets this head's linear layer with the standardisation
        folded in (``W / std``, ``b - W mean / std``), which applied to the masked mean of the
        encoder's last hidden states gives exactly this head's logits. Stock parts this model
        never had (BERT's pooler; XLM-R's two-layer head) are left out, so transformers reports
        them as newly initialised instead of loading random weights silently. The exact head
        (running statistics + linear) is ``seqcls_head.safetensors``; :meth:`from_saved` and
        ``kbioxlm predict`` use it.
        """
        n = self.classifier.out_features
        config = self.encoder.config.__class__.from_dict(self.encoder.config.to_dict())
        config.id2label = dict(id2label or {i: f"LABEL_{i}" for i in range(n)})
        config.label2id = {v: k for k, v in config.id2label.items()}
        config.problem_type = "multi_label_classification" if self.multilabel else "single_label_classification"
        stock = AutoModelForSequenceClassification.from_config(config)
        prefix = stock.base_model_prefix
        load_encoder_state(getattr(stock, prefix), self.encoder.state_dict())
        state = {
            f"{prefix}.{k}": v for k, v in self.encoder.state_dict().items() if f"{prefix}.{k}" in stock.state_dict()
        }
        head = getattr(stock, "classifier", None)
        if isinstance(head, torch.nn.Linear) and head.weight.shape == self.classifier.weight.shape:
            with torch.no_grad():
                mean, var = self.running_stats()
                std = torch.sqrt(var + self.norm.eps)
                w = self.classifier.weight / std
                state["classifier.weight"] = w.detach().clone()
                state["classifier.bias"] = (self.classifier.bias - w @ mean).detach().clone()
        stock.config.architectures = [type(stock).__name__]
        stock.save_pretrained(path, state_dict={k: v.detach().cpu().contiguous() for k, v in state.items()})
        exact = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("encoder.")}
        save_file(exact, str(Path(path) / HEAD_FILE), metadata={"format": "pt"})

    @classmethod
    def from_saved(cls, path: str | os.PathLike[str]) -> NormalizedPoolingClassifier:
        """The model written by :meth:`save_pretrained` (also the earlier layout: ``AutoModel``
        encoder + ``seqcls_head.safetensors`` + ``seqcls_head.json``)."""
        folder = Path(path)
        legacy = folder / LEGACY_INFO
        if legacy.is_file():
            info = json.loads(legacy.read_text(encoding="utf-8"))
            num_labels, multilabel = int(info["num_labels"]), bool(info["multilabel"])
        else:
            config = AutoConfig.from_pretrained(folder)
            num_labels, multilabel = config.num_labels, config.problem_type == "multi_label_classification"
        kwargs: dict[str, Any] = {"add_pooling_layer": False} if _has_pooler_arg(str(folder)) else {}
        net = cls(AutoModel.from_pretrained(folder, **kwargs), num_labels, multilabel)
        net.load_state_dict(load_file(str(folder / HEAD_FILE)), strict=False)
        return net.eval()


def save_seqcls_model(model: Any, path: str | os.PathLike[str], id2label: dict[int, str]) -> None:
    """Save a fine-tuned RE/DC model so the stock Auto class and ``pipeline`` give its labels.

    The ``model`` head is the stock class itself: only ``id2label``/``label2id`` are added to its
    config (``problem_type`` was set when it was built). The ``normalized`` head has its own
    layout (:meth:`NormalizedPoolingClassifier.save_pretrained`).
    """
    if isinstance(model, NormalizedPoolingClassifier):
        model.save_pretrained(path, id2label)
        return
    model.config.id2label = dict(id2label)
    model.config.label2id = {v: k for k, v in id2label.items()}
    model.save_pretrained(path)


def build_normalized_model(
    model: str, num_labels: int, multilabel: bool, dropout: float | None = None
) -> tuple[Any, set[str]]:
    """The ``normalized`` head on any ``AutoModel`` encoder; every head parameter is new."""
    kwargs: dict[str, Any] = {"add_pooling_layer": False} if _has_pooler_arg(model) else {}
    encoder = AutoModel.from_pretrained(model, **kwargs)
    net = NormalizedPoolingClassifier(encoder, num_labels, multilabel, 0.1 if dropout is None else dropout)
    return net, {n for n, _ in net.named_parameters() if not n.startswith("encoder.")}


def _has_pooler_arg(model: str) -> bool:
    """BERT/RoBERTa-style encoders take ``add_pooling_layer``; the pooler is unused here."""
    return AutoConfig.from_pretrained(model).model_type in {"bert", "roberta", "xlm-roberta"}


@torch.no_grad()
def predict_seqcls(logits: torch.Tensor, multilabel: bool, threshold: float = 0.5) -> tuple[list[Any], list[Any]]:
    """Predicted labels and scores (class probabilities / per-label sigmoids) from logits."""
    if multilabel:
        probs = torch.sigmoid(logits)
        return (probs >= threshold).long().tolist(), probs.tolist()
    probs = torch.softmax(logits, dim=-1)
    return probs.argmax(-1).tolist(), probs.tolist()
