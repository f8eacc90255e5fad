"""Encoder + MLM head over a reduced output vocabulary + passage-pair head (paper 3.1, A.1).

Why a custom module instead of ``XLMRobertaForMaskedLM``:

* **Reduced output vocabulary.** EN+ZH text uses a small part of XLM-R's 250,002 pieces. The
  paper slices the pretrained decoder down to the 37,030 rows it needs (appendix A.1). Here the
  decoder weight/bias are the rows ``kept_ids`` *copied from the full head*, so the kept logits
  are exactly the full model's logits. Inputs keep the full vocabulary and the real ``<mask>`` id.
* **Logits only at masked positions.** Hidden states are gathered where ``mlm_labels != -100``
  *before* the head, so the head runs on ~15% of the tokens instead of all of them. The plain
  model computes a (batch × length × 250,002) logit tensor and throws 85% of it away.
* **Per-task losses** (``L = Le + Lf + Lp (+ Lmlm)``, paper eq. 4) and per-task accuracy
  bookkeeping, attributed by each row's task id.

Label remapping: ``mlm_labels`` hold *full-vocabulary* ids. Ids outside the kept set are
**ignored** (treated as -100): they drop out of the loss and the accuracy counts and are reported
as ``mlm_ignored``. Mapping them to ``<unk>`` would instead teach the model to predict ``<unk>``.
With ``kept_ids`` counted over the training corpora this never happens for those corpora.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM
from transformers.activations import ACT2FN
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING
from transformers.utils import ModelOutput

from ..errors import KbioxlmError
from ..hub import check_model_name, load_error
from ..io import atomic_write
from ..schema import PASSAGE_LABELS
from . import PRETRAIN_TASKS, TASK_IDS

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
META_FILE = "kbioxlm_model.json"
VOCAB_MAP_FILE = "vocab_map.json"
META_FORMAT = "kbioxlm-pretrain-model"
META_VERSION = 1

MLM_TASK = TASK_IDS["mlm"]
PASSAGE_TASK = TASK_IDS["passage"]
IGNORE = -100


@dataclass
class PretrainOutput(ModelOutput):
    """What :meth:`KnowledgeAnchoredModel.forward` returns.

    ``losses`` holds only the tasks present in the batch (a mean over zero tokens is undefined);
    ``mlm_correct``/``mlm_count`` always hold every task name (``passage`` stays 0, because the
    MLM tokens of passage rows count under ``mlm``). ``logits``/``mlm_targets`` are over the
    masked positions only, in the reduced vocabulary.
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    mlm_correct: dict[str, int] | None = None
    mlm_count: dict[str, int] | None = None
    mlm_ignored: int | None = None
    pair_correct: int | None = None
    pair_count: int | None = None
    logits: torch.Tensor | None = None
    mlm_targets: torch.Tensor | None = None
    pair_logits: torch.Tensor | None = None
    align_correct: int | None = None
    align_count: int | None = None


class MLMHead(nn.Module):
    """dense → activation → LayerNorm → decoder (+bias): the BERT/RoBERTa LM head layout."""

    def __init__(self, hidden_size: int, vocab_size: int, activation: str, layer_norm_eps: float) -> None:
        super().__init__()
        self.activation = activation
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = ACT2FN[activation]
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.act(self.dense(hidden))))


class PairHead(nn.Module):
    """RoBERTa-style classification head on the first token: dropout, dense, tanh, dropout, linear."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(first_token)))
        return self.out_proj(self.dropout(x))


# --------------------------------------------------------------------------------------------
# Architecture adapters: where each family keeps its LM head. Used to initialise our head from a
# checkpoint and, in export.py, to write it back under the architecture's own parameter names.
# --------------------------------------------------------------------------------------------


@dataclass
class LMHeadParts:
    dense: nn.Linear
    layer_norm: nn.LayerNorm
    decoder: nn.Linear
    bias: nn.Parameter  # the head's separate output bias (tied to decoder.bias when embeddings are tied)
    activation: str
    prefix: str  # parameter-name prefix of the dense layer's parent, e.g. "lm_head."


def lm_head_parts(mlm_model: nn.Module) -> LMHeadParts | None:
    """Locate dense/LayerNorm/decoder/bias in a ``*ForMaskedLM`` model, or None if unknown."""
    head = getattr(mlm_model, "lm_head", None)
    if head is not None and all(hasattr(head, a) for a in ("dense", "layer_norm", "decoder", "bias")):
        # RoBERTa family (XLM-R, RoBERTa, CamemBERT, XLM-R-XL, Data2VecText): fixed exact GELU.
        return LMHeadParts(head.dense, head.layer_norm, head.decoder, head.bias, "gelu", "lm_head.")
    cls = getattr(mlm_model, "cls", None)
    pred = getattr(cls, "predictions", None)
    transform = getattr(pred, "transform", None)
    if transform is not None and all(hasattr(transform, a) for a in ("dense", "LayerNorm")):
        act = getattr(mlm_model.config, "hidden_act", None)
        if not isinstance(act, str) or pred is None:
            return None
        return LMHeadParts(
            transform.dense, transform.LayerNorm, pred.decoder, pred.bias, act, "cls.predictions.transform."
        )
    return None


def _supports_masked_lm(config: Any) -> bool:
    return type(config) in MODEL_FOR_MASKED_LM_MAPPING


def _encoder_from_config(config: Any) -> PreTrainedModel:
    """Bare encoder without pooler (as inside ``*ForMaskedLM``), so state dicts match on reload."""
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler argument
        return AutoModel.from_config(config)


def _check_kept_ids(kept_ids: Sequence[int] | None, vocab_size: int) -> list[int] | None:
    if kept_ids is None:
        return None
    ids = sorted({int(i) for i in kept_ids})
    if not ids:
        raise KbioxlmError("kept_ids is empty")
    if ids[0] < 0 or ids[-1] >= vocab_size:
        bad = ids[0] if ids[0] < 0 else ids[-1]
        raise KbioxlmError(f"kept id {bad} is outside the model's vocabulary (size {vocab_size})")
    return ids


def _check_weights(loss_weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = {t: 1.0 for t in PRETRAIN_TASKS}
    for key, value in (loss_weights or {}).items():
        if key not in weights:
            raise KbioxlmError(f"unknown loss weight {key!r}; expected one of {', '.join(PRETRAIN_TASKS)}")
        weights[key] = float(value)
    return weights


class KnowledgeAnchoredModel(nn.Module):
    """Any ``AutoModel`` encoder + MLM head (optionally reduced vocabulary) + 3-way pair head.

    Build with :meth:`from_pretrained` (a Hugging Face checkpoint or hub name),
    :meth:`from_config` (random weights, tests/benchmarks) or :meth:`load` (a training checkpoint
    written by :meth:`save_pretrained`).
    """

    full_to_reduced: torch.Tensor  # registered buffer: full-vocabulary id -> reduced index (or -100)

    def __init__(
        self,
        encoder: PreTrainedModel,
        mlm_head: MLMHead,
        pair_head: PairHead,
        kept_ids: list[int] | None,
        loss_weights: Mapping[str, float] | None = None,
        meta: dict[str, Any] | None = None,
        vocab_map: list[int] | None = None,
        pair_pooling: str = "cls",
        align_temperature: float = 0.05,
    ) -> None:
        super().__init__()
        if pair_pooling not in ("cls", "mean"):
            raise KbioxlmError(f"pair_pooling must be 'cls' or 'mean', got {pair_pooling!r}")
        if not align_temperature > 0:
            raise KbioxlmError(f"align_temperature must be > 0, got {align_temperature!r}")
        # ``mean``: the pair head reads the mean of the sequence's states, the representation a
        # sentence-embedding encoder (e5) was trained to produce; ``cls``: the first token (paper).
        self.pair_pooling = pair_pooling
        self.align_temperature = float(align_temperature)
        self.encoder = encoder
        self.mlm_head = mlm_head
        self.pair_head = pair_head
        self.full_vocab_size = int(input_embedding_weight(encoder).shape[0])
        self.kept_ids = _check_kept_ids(kept_ids, self.full_vocab_size)
        out_size = len(self.kept_ids) if self.kept_ids is not None else self.full_vocab_size
        if mlm_head.decoder.out_features != out_size:
            raise KbioxlmError(f"MLM head has {mlm_head.decoder.out_features} outputs, expected {out_size}")
        self.loss_weights = _check_weights(loss_weights)
        self.meta = dict(meta or {})
        self.vocab_map = vocab_map
        # full id -> reduced index (IGNORE for ids outside the kept set); not saved, rebuilt from kept_ids.
        if self.kept_ids is not None:
            table = torch.full((self.full_vocab_size,), IGNORE, dtype=torch.long)
            table[torch.tensor(self.kept_ids)] = torch.arange(len(self.kept_ids))
        else:
            table = torch.arange(self.full_vocab_size, dtype=torch.long)
        self.register_buffer("full_to_reduced", table, persistent=False)

    def set_options(self, pair_pooling: str | None = None, align_temperature: float | None = None) -> None:
        """Choose the pair head's pooling and the align task's temperature after construction
        (the constructors above build from checkpoints that do not carry these choices)."""
        if pair_pooling is not None:
            if pair_pooling not in ("cls", "mean"):
                raise KbioxlmError(f"pair_pooling must be 'cls' or 'mean', got {pair_pooling!r}")
            self.pair_pooling = pair_pooling
        if align_temperature is not None:
            if not float(align_temperature) > 0:
                raise KbioxlmError(f"align_temperature must be > 0, got {align_temperature!r}")
            self.align_temperature = float(align_temperature)

    def freeze(self, encoder: bool = False, embeddings: bool = False, layers: int = 0) -> list[str]:
        """Stop training parts of the encoder; returns the frozen parameter names.

        ``encoder``: the whole encoder (a head warm-up stage: a fresh MLM head learns the frozen
        encoder's space before any gradient reaches the encoder). ``embeddings`` and ``layers``
        (the lowest N transformer layers): protect what the base model knows in its lower layers.
        """
        layer_list = _encoder_layers(self.encoder)
        if layers and layer_list is None:
            raise KbioxlmError(f"{type(self.encoder).__name__}: cannot locate transformer layers to freeze")
        if layer_list is not None and layers > len(layer_list):
            raise KbioxlmError(f"freeze_layers={layers} but the encoder has {len(layer_list)} layers")
        frozen: list[str] = []
        parts: list[tuple[str, nn.Module]] = []
        if encoder:
            parts.append(("encoder", self.encoder))
        else:
            if embeddings:
                parts.append(
                    (
                        "encoder.embeddings",
                        getattr(self.encoder, "embeddings", None) or self.encoder.get_input_embeddings(),
                    )
                )
            for i in range(int(layers or 0)):
                parts.append((f"encoder.layer.{i}", layer_list[i]))  # type: ignore[index]
        for prefix, module in parts:
            for name, p in module.named_parameters():
                p.requires_grad_(False)
                frozen.append(f"{prefix}.{name}")
        return frozen

    # ------------------------------------------------------------------ construction

    @property
    def config(self) -> Any:
        """The encoder's Hugging Face config (trainers look for ``model.config``)."""
        return self.encoder.config

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        kept_ids: Sequence[int] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        **from_pretrained_kwargs: Any,
    ) -> KnowledgeAnchoredModel:
        """Load an encoder checkpoint; initialise the MLM head from its LM head when it has one.

        ``*ForMaskedLM`` is loaded when the architecture has one, so its LM head (``lm_head.*`` for
        XLM-R, ``cls.predictions.*`` for BERT) comes with it; checkpoints without a head (e.g. a
        bare ``BertModel``) get a fresh dense/LayerNorm and a decoder copied from the input
        embeddings with zero bias. Extra keyword arguments go to ``from_pretrained``.
        """
        name = str(name_or_path)
        hub_keys = ("revision", "cache_dir", "local_files_only", "token", "trust_remote_code")
        cfg_kwargs = {k: v for k, v in from_pretrained_kwargs.items() if k in hub_keys}
        check_model_name(name, "model")
        try:
            config = AutoConfig.from_pretrained(name, **cfg_kwargs)
        except (OSError, ValueError) as exc:
            raise load_error(name, exc, "model config") from exc
        meta = {"base_model": name}
        vocab_map = _read_vocab_map(name)
        if _supports_masked_lm(config):
            mlm, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True, **from_pretrained_kwargs)
            parts = lm_head_parts(mlm)
            missing = set(info.get("missing_keys", ()))
            # The head counts as loaded when its dense/LayerNorm came from the checkpoint (a tied
            # decoder weight is never reported missing; a bare encoder checkpoint misses them all).
            head_loaded = parts is not None and not any(k.startswith(parts.prefix) for k in missing)
            return cls._from_mlm_model(mlm, head_loaded, kept_ids, loss_weights, meta, vocab_map)
        encoder = AutoModel.from_pretrained(name, **from_pretrained_kwargs)
        return cls._from_encoder(encoder, kept_ids, loss_weights, meta, vocab_map)

    @classmethod
    def from_config(
        cls,
        config: Any,
        kept_ids: Sequence[int] | None = None,
        loss_weights: Mapping[str, float] | None = None,
    ) -> KnowledgeAnchoredModel:
        """Random weights from a Hugging Face config (tests, benchmarks, training from scratch)."""
        meta = {"base_model": None}
        if _supports_masked_lm(config):
            mlm = AutoModelForMaskedLM.from_config(config)
            return cls._from_mlm_model(mlm, True, kept_ids, loss_weights, meta, None)
        return cls._from_encoder(_encoder_from_config(config), kept_ids, loss_weights, meta, None)

    @classmethod
    def _from_mlm_model(
        cls,
        mlm: PreTrainedModel,
        head_loaded: bool,
        kept_ids: Sequence[int] | None,
        loss_weights: Mapping[str, float] | None,
        meta: dict[str, Any],
        vocab_map: list[int] | None,
    ) -> KnowledgeAnchoredModel:
        parts = lm_head_parts(mlm)
        encoder = getattr(mlm, mlm.base_model_prefix)
        if parts is None:
            log.warning("%s: LM head layout unknown; MLM head freshly initialised", type(mlm).__name__)
            return cls._from_encoder(encoder, kept_ids, loss_weights, meta, vocab_map)
        config = mlm.config
        vocab_size = input_embedding_weight(encoder).shape[0]
        ids = _check_kept_ids(kept_ids, vocab_size)
        head = MLMHead(config.hidden_size, len(ids) if ids else vocab_size, parts.activation, config.layer_norm_eps)
        with torch.no_grad():
            head.dense.load_state_dict(parts.dense.state_dict())
            head.layer_norm.load_state_dict(parts.layer_norm.state_dict())
            weight: torch.Tensor
            bias: torch.Tensor
            if head_loaded:
                weight, bias = parts.decoder.weight, parts.bias
            else:
                weight = input_embedding_weight(encoder)
                bias = torch.zeros(vocab_size)
                log.info("no LM head in the checkpoint: dense/LayerNorm fresh, decoder from input embeddings")
            index = torch.tensor(ids) if ids else torch.arange(vocab_size)
            head.decoder.weight.copy_(weight.detach()[index])
            head.decoder.bias.copy_(bias.detach()[index])
        meta = {**meta, "head_from_checkpoint": bool(head_loaded)}
        model = cls(encoder, head, _new_pair_head(config), ids, loss_weights, meta, vocab_map)
        model.to(input_embedding_weight(encoder).dtype)
        return model

    @classmethod
    def _from_encoder(
        cls,
        encoder: PreTrainedModel,
        kept_ids: Sequence[int] | None,
        loss_weights: Mapping[str, float] | None,
        meta: dict[str, Any],
        vocab_map: list[int] | None,
    ) -> KnowledgeAnchoredModel:
        config = encoder.config
        emb = input_embedding_weight(encoder)
        vocab_size = emb.shape[0]
        ids = _check_kept_ids(kept_ids, vocab_size)
        act = config.hidden_act if isinstance(getattr(config, "hidden_act", None), str) else "gelu"
        eps = float(getattr(config, "layer_norm_eps", 1e-12))
        head = MLMHead(config.hidden_size, len(ids) if ids else vocab_size, act, eps)
        std = float(getattr(config, "initializer_range", 0.02))
        with torch.no_grad():
            head.dense.weight.normal_(0.0, std)
            head.dense.bias.zero_()
            index = torch.tensor(ids) if ids else torch.arange(vocab_size)
            head.decoder.weight.copy_(emb.detach()[index])
            head.decoder.bias.zero_()
        meta = {**meta, "head_from_checkpoint": False}
        return cls(encoder, head, _new_pair_head(config), ids, loss_weights, meta, vocab_map)

    # ------------------------------------------------------------------ forward

    def remap_labels(self, mlm_labels: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary label ids → reduced indices; -100 stays -100, unkept ids become -100."""
        masked = mlm_labels != IGNORE
        safe = torch.where(masked, mlm_labels, torch.zeros_like(mlm_labels))
        return torch.where(masked, self.full_to_reduced[safe], torch.full_like(mlm_labels, IGNORE))

    def mean_pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pool_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean of the last hidden states over ``pool_mask`` (the name's pieces, no specials)."""
        return masked_mean(self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0], pool_mask)

    def align_loss(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Symmetric InfoNCE between pooled names: row i of ``a`` and of ``b`` name one concept,
        every other row of the batch is a negative. Returns the loss and the number of rows (of
        2n, both directions) whose nearest neighbour is their own pair (in-batch retrieval)."""
        za = F.normalize(a.float(), dim=-1)
        zb = F.normalize(b.float(), dim=-1)
        sim = za @ zb.T / self.align_temperature
        target = torch.arange(sim.shape[0], device=sim.device)
        loss = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
        with torch.no_grad():
            correct = int((sim.argmax(1) == target).sum()) + int((sim.argmax(0) == target).sum())
        return loss, correct

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        pair_labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        align_a_ids: torch.Tensor | None = None,
        align_a_attention: torch.Tensor | None = None,
        align_a_mask: torch.Tensor | None = None,
        align_b_ids: torch.Tensor | None = None,
        align_b_attention: torch.Tensor | None = None,
        align_b_mask: torch.Tensor | None = None,
    ) -> PretrainOutput:
        align_loss = None
        align_correct = align_count = 0
        if align_a_ids is not None and align_b_ids is not None:
            assert align_a_mask is not None and align_b_mask is not None, "align pairs need their pool masks"
            a = self.mean_pooled(align_a_ids, align_a_attention, align_a_mask)
            b = self.mean_pooled(align_b_ids, align_b_attention, align_b_mask)
            align_loss, align_correct = self.align_loss(a, b)
            align_count = 2 * a.shape[0]
        if input_ids is None:
            # An all-`align` batch: the MLM and pair heads are unused (zero terms keep them in the
            # graph for DDP).
            if align_loss is None:
                raise KbioxlmError("empty batch: neither input_ids nor align pairs")
            zero = sum(p.sum() for p in (*self.mlm_head.parameters(), *self.pair_head.parameters())) * 0.0
            empty = {t: 0 for t in PRETRAIN_TASKS}
            return PretrainOutput(
                loss=self.loss_weights["align"] * align_loss + zero,
                losses={"align": align_loss.detach()},
                mlm_correct=dict(empty),
                mlm_count=dict(empty),
                mlm_ignored=0,
                pair_correct=0,
                pair_count=0,
                align_correct=align_correct,
                align_count=align_count,
            )
        enc_kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            enc_kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**enc_kwargs)[0]  # (B, T, H)
        batch = hidden.shape[0]
        if task_ids is None:
            task_ids = torch.full((batch,), MLM_TASK, dtype=torch.long, device=hidden.device)
        n_tasks = len(PRETRAIN_TASKS)
        want_loss = mlm_labels is not None or pair_labels is not None
        terms: list[torch.Tensor] = []
        stats = torch.zeros(3 * n_tasks + 3, dtype=torch.long, device=hidden.device)
        logits = targets = None
        task_sum = None
        if mlm_labels is not None:
            reduced = self.remap_labels(mlm_labels)
            ignored = ((mlm_labels != IGNORE) & (reduced == IGNORE)).sum()
            selected = reduced != IGNORE
            rows = selected.nonzero(as_tuple=True)[0]
            # The speed trick: the head only sees the masked positions.
            logits = self.mlm_head(hidden[selected])
            targets = reduced[selected]
            token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
            row_task = task_ids.to(hidden.device)[rows]
            row_task = torch.where(row_task == PASSAGE_TASK, torch.full_like(row_task, MLM_TASK), row_task)
            task_sum = torch.zeros(n_tasks, dtype=token_loss.dtype, device=hidden.device).index_add(
                0, row_task, token_loss
            )
            correct = (logits.detach().argmax(-1) == targets).long()
            stats[:n_tasks] = torch.bincount(row_task, weights=correct.to(torch.float64), minlength=n_tasks).long()
            stats[n_tasks : 2 * n_tasks] = torch.bincount(row_task, minlength=n_tasks)
            stats[3 * n_tasks] = ignored
            if logits.shape[0] == 0:  # keep the head in the graph (DDP) without a NaN mean
                terms.append(logits.sum() * 0.0)
        if self.pair_pooling == "mean":
            pair_logits = self.pair_head(
                masked_mean(hidden, attention_mask if attention_mask is not None else torch.ones_like(input_ids))
            )
        else:
            pair_logits = self.pair_head(hidden[:, 0])
        pair_loss = None
        if pair_labels is not None:
            pair_labels = pair_labels.to(hidden.device)
            valid = pair_labels != IGNORE
            stats[3 * n_tasks + 2] = valid.sum()
            if bool(valid.any()):
                pl, pt = pair_logits[valid], pair_labels[valid]
                pair_loss = F.cross_entropy(pl.float(), pt)
                stats[3 * n_tasks + 1] = (pl.detach().argmax(-1) == pt).sum()
        if want_loss and pair_loss is None:
            terms.append(pair_logits.sum() * 0.0)  # pair head unused this batch: zero grads, no DDP hang

        host = stats.tolist()  # one device sync for all the bookkeeping
        mlm_correct = {t: host[i] for i, t in enumerate(PRETRAIN_TASKS)}
        mlm_count = {t: host[n_tasks + i] for i, t in enumerate(PRETRAIN_TASKS)}
        losses: dict[str, torch.Tensor] = {}
        if task_sum is not None:
            for i, t in enumerate(PRETRAIN_TASKS):
                if mlm_count[t]:
                    mean = task_sum[i] / mlm_count[t]
                    losses[t] = mean.detach()
                    terms.append(self.loss_weights[t] * mean)
        if pair_loss is not None:
            losses["passage"] = pair_loss.detach()
            terms.append(self.loss_weights["passage"] * pair_loss)
        if align_loss is not None:
            losses["align"] = align_loss.detach()
            terms.append(self.loss_weights["align"] * align_loss)
            want_loss = True
        loss = torch.stack([t.float() for t in terms]).sum() if want_loss else None
        return PretrainOutput(
            loss=loss,
            losses=losses,
            mlm_correct=mlm_correct,
            mlm_count=mlm_count,
            mlm_ignored=host[3 * n_tasks],
            pair_correct=host[3 * n_tasks + 1],
            pair_count=host[3 * n_tasks + 2],
            logits=logits,
            mlm_targets=targets,
            pair_logits=pair_logits,
            align_correct=align_correct,
            align_count=align_count,
        )

    def mlm_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any
    ) -> torch.Tensor:
        """Logits at *every* position over the (reduced) output vocabulary; for checks and export tests."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw)[0]
        return self.mlm_head(hidden)

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        """Recompute encoder activations in backward (less memory); passes through to the encoder."""
        enable = getattr(self.encoder, "activation_checkpointing_enable", None)
        if enable is not None:  # transformers >= 5
            enable(activation_checkpointing_kwargs, **kw)
        else:
            self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=activation_checkpointing_kwargs)

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        """Name used by transformers 4.x and most trainers; same as :meth:`activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kw)

    def activation_checkpointing_disable(self) -> None:
        disable = getattr(self.encoder, "activation_checkpointing_disable", None)
        (disable or self.encoder.gradient_checkpointing_disable)()

    def gradient_checkpointing_disable(self) -> None:
        self.activation_checkpointing_disable()

    @property
    def supports_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.encoder, "supports_gradient_checkpointing", False))

    # ------------------------------------------------------------------ checkpoints

    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """Write ``config.json`` (encoder), ``kbioxlm_model.json`` (heads, kept ids, weights) and
        ``model.safetensors`` (all parameters), each atomically; ``vocab_map.json`` when the
        encoder is a trimmed one. Enough for :meth:`load` to rebuild the exact model."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.config.save_pretrained(out)
        meta = {
            "format": META_FORMAT,
            "version": META_VERSION,
            **self.meta,
            "full_vocab_size": self.full_vocab_size,
            "kept_ids": self.kept_ids,
            "loss_weights": self.loss_weights,
            "mlm_head": {"activation": self.mlm_head.activation, "layer_norm_eps": self.mlm_head.layer_norm.eps},
            "pair_labels": list(PASSAGE_LABELS),
            "pair_dropout": self.pair_head.dropout.p,
            "pair_pooling": self.pair_pooling,
            "align_temperature": self.align_temperature,
            "tasks": list(PRETRAIN_TASKS),
        }
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        tmp = out / f".{WEIGHTS_FILE}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out / WEIGHTS_FILE)
        if self.vocab_map is not None:
            with atomic_write(out / VOCAB_MAP_FILE) as fh:
                json.dump(self.vocab_map, fh, separators=(",", ":"))
        with atomic_write(out / META_FILE) as fh:  # written last: its presence marks a complete save
            json.dump(meta, fh, indent=1)
            fh.write("\n")

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> KnowledgeAnchoredModel:
        """Rebuild a model saved by :meth:`save_pretrained` (exact resume)."""
        d = Path(directory)
        meta = read_meta(d)
        try:
            config = AutoConfig.from_pretrained(d)
        except (OSError, ValueError, KeyError) as exc:
            raise KbioxlmError(
                f"{d / 'config.json'}: cannot load the model config ({str(exc).splitlines()[0]})"
            ) from exc
        encoder = _encoder_from_config(config)
        vocab_size = input_embedding_weight(encoder).shape[0]
        kept = meta.get("kept_ids")
        head_cfg = meta.get("mlm_head", {})
        head = MLMHead(
            config.hidden_size,
            len(kept) if kept else vocab_size,
            head_cfg.get("activation", "gelu"),
            float(head_cfg.get("layer_norm_eps", getattr(config, "layer_norm_eps", 1e-12))),
        )
        pair = PairHead(
            config.hidden_size, len(meta.get("pair_labels", PASSAGE_LABELS)), float(meta.get("pair_dropout", 0.1))
        )
        keep_meta = {k: v for k, v in meta.items() if k in ("base_model", "head_from_checkpoint")}
        model = cls(
            encoder,
            head,
            pair,
            kept,
            meta.get("loss_weights"),
            keep_meta,
            _read_vocab_map(d),
            pair_pooling=meta.get("pair_pooling", "cls"),
            align_temperature=float(meta.get("align_temperature", 0.05)),
        )
        try:
            state = load_file(str(d / WEIGHTS_FILE), device=str(map_location))
        except (OSError, SafetensorError) as exc:  # truncated or corrupt file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KbioxlmError(f"{d / WEIGHTS_FILE}: unreadable, truncated or corrupt ({reason})") from exc
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            reason = next((ln for ln in lines if "size mismatch" in ln), lines[0] if lines else "")
            raise KbioxlmError(f"{d / WEIGHTS_FILE}: does not match its config ({reason})") from exc
        missing = [k for k in result.missing_keys if "pooler" not in k]
        unexpected = [k for k in result.unexpected_keys if "pooler" not in k]
        if missing or unexpected:
            raise KbioxlmError(
                f"{d / WEIGHTS_FILE}: does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model.to(map_location)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``mask`` (B, T) is 1."""
    w = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)


def input_embedding_weight(encoder: PreTrainedModel) -> torch.Tensor:
    """The input embedding matrix (vocab, hidden) of a Hugging Face encoder."""
    weight = encoder.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _encoder_layers(encoder: nn.Module) -> nn.ModuleList | None:
    """The transformer layer list of a BERT/RoBERTa/XLM-R-style encoder (``encoder.layer``)."""
    inner = getattr(encoder, "encoder", None)
    layers = getattr(inner, "layer", None) if inner is not None else None
    return layers if isinstance(layers, nn.ModuleList) else None


def _new_pair_head(config: Any) -> PairHead:
    dropout: Any = getattr(config, "classifier_dropout", None)
    if dropout is None:
        dropout = getattr(config, "hidden_dropout_prob", 0.1)
    head = PairHead(config.hidden_size, len(PASSAGE_LABELS), float(dropout))
    std = float(getattr(config, "initializer_range", 0.02))
    with torch.no_grad():
        for lin in (head.dense, head.out_proj):
            lin.weight.normal_(0.0, std)
            lin.bias.zero_()
    return head


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``kbioxlm_model.json`` of a training checkpoint, with a one-line error when absent/bad."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise KbioxlmError(f"{directory}: not a kbioxlm training checkpoint (no {META_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KbioxlmError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise KbioxlmError(f"{path}: not a {META_FORMAT} file")
    if not (path.parent / WEIGHTS_FILE).is_file():
        raise KbioxlmError(f"{directory}: missing {WEIGHTS_FILE}")
    return meta


def _read_vocab_map(directory: str | os.PathLike[str]) -> list[int] | None:
    """``vocab_map.json`` (new id → original id) of a trimmed model directory, if any."""
    path = Path(directory) / VOCAB_MAP_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KbioxlmError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, list) or not all(isinstance(i, int) for i in data):
        raise KbioxlmError(f"{path}: expected a JSON list of integer ids")
    return data
