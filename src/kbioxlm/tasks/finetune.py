"""Fine-tune an encoder on NER / RE / DC, select the checkpoint on dev, score the test set.

``run_finetune(FinetuneConfig(...))`` is the single entry point used by the CLI, the benchmark
protocols (which pass sampled few-shot record lists instead of paths) and the docs. It:

1. reads train/dev/test (paths or record lists), optionally sub-samples train (seeded);
2. trains with AdamW, a linear warm-up + linear decay schedule stepped after every optimiser step,
   gradient clipping at 1.0, and ``torch`` using all CPU cores unless told otherwise, on the
   training engine pretraining uses (:mod:`kbioxlm.engine`: accelerate, one ``micro_step``), so
   ``mixed_precision: bf16`` and several processes (``torchrun`` / ``accelerate launch``) work;
3. evaluates dev after each epoch, keeps the best state in memory, stops early after
   ``early_stopping_patience`` epochs without improvement (zero-shot: dev is the SOURCE language);
4. reloads the best state, scores the test set (and any ``extra_tests``) and writes
   ``out/results.json`` and ``out/predictions.jsonl`` atomically.

Scores are percentages (see :mod:`kbioxlm.tasks.metrics`).

``kbioxlm --help`` imports this module (the ``finetune`` flags are :class:`FinetuneConfig`'s fields),
so torch, transformers, accelerate and the modules built on them (:mod:`.ner`, :mod:`.seqcls`,
:mod:`kbioxlm.engine`, :mod:`kbioxlm.modelcard`) are imported inside the functions that use them
(marked ``# lazy``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import operator
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cliutil import name_and_file
from ..config import option
from ..errors import KbioxlmError, where
from ..hub import check_model_name, load_error
from ..io import check_output_dir, check_writable_dir, make_temp_dir, replace_dir, write_json, write_jsonl, write_marker
from ..progress import progress as progress_bar
from ..schema import is_unspaced
from .metrics import binary_scores, multilabel_scores, ner_scores
from .readers import HOC_LABELS, detect_lang, find_tag_line, read_ner, read_seqcls

log = logging.getLogger(__name__)

FINETUNE_TASKS = ("ner", "re", "dc")
METRIC_NAMES = {
    "ner": "entity_f1 (seqeval default mode)",
    "re": "positive_class_f1",
    "dc": "micro_f1 (abstract x label cells)",
}

Data = str | os.PathLike | list


def _zero_is_none(value: int | None) -> int | None:
    return value or None


@dataclass
class FinetuneConfig:
    """Everything one fine-tuning run depends on (stored verbatim in ``results.json``)."""

    # A field with ``metadata=option(...)`` is also a flag of ``kbioxlm finetune`` (kbioxlm.cliutil.add_dataclass_options).
    task: str = field(
        metadata=option(
            "ner: entity tagging (CRF head); re: relation classification; dc: multi-label document classes",
            choices=FINETUNE_TASKS,
            required=True,
        )
    )
    model: str = field(metadata=option("HF model name or folder", required=True))
    train: Data = field(
        metadata=option("training set (release CoNLL / NER JSONL, or JSON lines for re/dc)", type=str, required=True)
    )
    dev: Data | None = field(
        default=None, metadata=option("dev set for checkpoint selection (source language for zero-shot)", type=str)
    )
    test: Data | None = field(
        default=None, metadata=option("test set, scored with the model selected on --dev", type=str, required=True)
    )
    out: str | None = field(
        default=None, metadata=option("output folder (results.json, predictions.jsonl)", required=True)
    )
    tokenizer: str | None = field(default=None, metadata=option("tokenizer name or folder (default: the model's)"))
    epochs: int = field(default=4, metadata=option("training epochs at most (see --early-stopping-patience)"))
    lr: float = field(
        default=5e-5,
        metadata=option(
            "learning rate of the encoder (config key learning_rate)",
            flags=("--learning-rate", "--lr"),
            hidden=("--lr",),
        ),
    )
    batch_size: int = field(default=16, metadata=option("training examples per step"))
    eval_batch_size: int = 64
    max_length: int = field(default=256, metadata=option("pieces per example (longer inputs are cut)"))
    seed: int = field(default=42, metadata=option("seed of initialisation, shuffling and dropout"))
    max_train_examples: int | None = field(
        default=None, metadata=option("use only the first N training examples (default: all)")
    )
    early_stopping_patience: int | None = field(
        default=2,
        metadata=option(
            "stop after this many epochs without a better dev score (0 = off)",
            flags=("--early-stopping-patience", "--patience"),
            hidden=("--patience",),
            dest="patience",
            to_field=_zero_is_none,
        ),
    )
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    crf_lr: float = 1e-3  # CRF transitions start near 0 and need a larger step than the encoder
    # Parameters the checkpoint lacks (the task's classifier; BERT's pooler when, as in e5, it was not
    # saved) start random: on small training sets at the encoder's rate they barely move before the
    # schedule decays, and a multi-label head then predicts nothing (HoC micro-F1 0). None = ``lr``.
    head_lr: float | None = field(
        default=None,
        metadata=option(
            "learning rate of parameters the checkpoint lacks (task head, missing pooler); default: --learning-rate",
            flags=("--head-learning-rate", "--head-lr"),
            hidden=("--head-lr",),
        ),
    )
    # RE/DC: dropout on the pooled vector before the classifier (None = the checkpoint's default).
    # An encoder trained for embeddings (e5) varies little between inputs along any one dimension;
    # 10% dropout noise can drown that signal while the head is still random.
    classifier_dropout: float | None = field(
        default=None, metadata=option("RE/DC: dropout before the classifier (default: the checkpoint's)")
    )
    # RE/DC head: "model" = the architecture's own (paper); "normalized" = mean pooling + per-dimension
    # standardisation, for embedding-trained encoders on small training sets (see tasks/seqcls.py).
    head: str = field(
        default="model",
        metadata=option(
            "RE/DC head: the architecture's own (default) or mean pooling + standardisation",
            choices=("model", "normalized"),
        ),
    )
    # normalized head only: standardise each evaluated set (dev, test, extra tests) with its own
    # inputs' statistics instead of the training ones (AdaBN; see tasks/seqcls.py). Unlabelled
    # use of the evaluation inputs: off by default, the paper's protocol does not do it.
    adapt_norm: bool = field(
        default=False,
        metadata=option("normalized head: standardise each evaluated set with its own inputs' statistics (AdaBN)"),
    )
    max_grad_norm: float = 1.0
    group_by_length: bool = True
    merge_adjacent_unspaced: bool = True  # NER, unspaced languages: B-X right after X continues it
    # learning curves / a hedge for runs that may be cut short
    log_test_each_epoch: bool = field(
        default=False, metadata=option("also score the test sets after every epoch (logged only; selection uses dev)")
    )
    threshold: float = 0.5  # DC: sigmoid threshold
    num_threads: int | None = field(
        default=None,
        metadata=option(
            "torch CPU threads (default: all cores)",
            flags=("--num-threads", "--threads"),
            hidden=("--threads",),
            dest="threads",
        ),
    )
    device: str | None = None
    # "no" or "bf16" (autocast in training and evaluation; CPUs and bf16-capable GPUs)
    mixed_precision: str = field(
        default="no",
        metadata=option(
            "bf16: autocast in training and evaluation (CPUs, bf16 GPUs); several processes: "
            "run under `accelerate launch` or `torchrun` (docs/evaluation.md)",
            choices=("no", "bf16"),
        ),
    )
    train_lang: str | None = field(
        default=None,
        metadata=option(
            "language of --train and --dev (default: detected)",
            flags=("--lang", "--train-lang"),
            hidden=("--train-lang",),
            also=("dev_lang",),
        ),
    )
    dev_lang: str | None = None
    test_lang: str | None = field(
        default=None,
        metadata=option(
            "language of --test (default: detected)", flags=("--target-lang", "--test-lang"), hidden=("--test-lang",)
        ),
    )
    extra_tests: dict[str, Data] = field(
        default_factory=dict,
        metadata=option(
            "further test sets scored with the selected model (repeatable)",
            flags=("--extra-test",),
            dest="extra_test",
            action="append",
            type=name_and_file,
            metavar="NAME=FILE",
            to_field=dict,
        ),
    )
    save_model: bool = field(default=False, metadata=option("also save the selected model to OUT/model"))
    progress: bool = field(
        default=True,
        metadata=option("no progress bar", flags=("--no-progress",), dest="no_progress", to_field=operator.not_),
    )
    # NER: an entity type in dev/test that training never shows is an error unless this is set
    allow_unseen_types: bool = field(
        default=False,
        metadata=option("NER: score entity types of dev/test sets that never occur in training (default: an error)"),
    )
    # RE/DC: class names written to a saved model's config (id2label); None = default_label_names()
    label_names: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-safe view: record lists are summarised by their size."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                v = f"<{len(v)} records>"
            elif isinstance(v, os.PathLike):
                v = os.fspath(v)
            elif isinstance(v, dict):
                v = {k: (f"<{len(x)} records>" if isinstance(x, list) else os.fspath(x)) for k, x in v.items()}
            out[f.name] = v
        return out


# ------------------------------------------------------------------------------------------ data


def load_finetune_records(task: str, data: Data, lang: str | None) -> list[dict[str, Any]]:
    """Records from a path (release or project format) or a ready list (copied, lang optionally set)."""
    if isinstance(data, list):
        recs = [dict(r) for r in data]
        for i, r in enumerate(recs):
            need = ("tokens", "tags") if task == "ner" else ("text", "label")
            missing = [k for k in need if k not in r]
            if missing:
                raise KbioxlmError(f"record {i} given to the {task} trainer lacks {missing}")
            if task == "re" and (r["label"] not in (0, 1) or isinstance(r["label"], bool)):
                raise KbioxlmError(
                    f"record {i} given to the re trainer: labels are 0 or 1 (binary relation), got {r['label']!r}"
                )
            if lang is not None:
                r["lang"] = lang
            r.setdefault("id", str(i))
            if "lang" not in r:
                r["lang"] = detect_lang("".join(r["tokens"]) if task == "ner" else r["text"])
        return recs
    if task == "ner":
        return [dict(r) for r in read_ner(data, lang)]
    return [dict(r) for r in read_seqcls(data, lang, task)]


def _check_entity_types(
    cfg: FinetuneConfig, train: list[dict[str, Any]], others: list[tuple[str, Any, list[dict[str, Any]]]]
) -> None:
    """An entity type that never occurs in training can never be predicted; scoring it silently
    changes the metric. Refused with the ``file:line`` of its first tag unless ``allow_unseen_types``."""
    from .ner import entity_types_of  # lazy: torch

    known = entity_types_of([r["tags"] for r in train])
    for name, data, recs in others:
        unseen = sorted(entity_types_of([r["tags"] for r in recs]) - known)
        if not unseen:
            continue
        if cfg.allow_unseen_types:
            log.warning("%s set: entity type(s) %s never occur in training; scored anyway", name, ", ".join(unseen))
            continue
        etype = unseen[0]
        if isinstance(data, (str, os.PathLike)):
            loc = where(data, find_tag_line(data, etype))
        else:
            rid = next(r["id"] for r in recs if etype in entity_types_of([r["tags"]]))
            loc = f"{name} set, record {rid}"
        sub = " (after --max-train-examples)" if cfg.max_train_examples else ""
        more = f" (also {', '.join(map(repr, unseen[1:]))})" if len(unseen) > 1 else ""
        raise KbioxlmError(
            f"{loc}: entity type {etype!r}{more} does not occur in the training set{sub}, so it could "
            "never be predicted; fix the tags or pass --allow-unseen-types to score it anyway"
        )


def _subsample(records: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    if n is None or n >= len(records):
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


# ------------------------------------------------------------------------------------------ task adapters


class _NERTask:
    """NER: encodings per sentence chunk, CRF loss, Viterbi decode, word-level scoring."""

    def __init__(
        self, cfg: FinetuneConfig, tokenizer: Any, all_sets: list[list[dict[str, Any]]], labels: list[str] | None = None
    ) -> None:
        """``labels``: a saved model's label list (prediction); else built from the data's tags."""
        from .ner import build_label_list, entity_types_of  # lazy: torch

        self.cfg, self.tok = cfg, tokenizer
        self.labels = (
            list(labels)
            if labels is not None
            else build_label_list(entity_types_of([r["tags"] for s in all_sets for r in s]))
        )
        self.label2id = {t: i for i, t in enumerate(self.labels)}

    def encode(self, records: list[dict[str, Any]]) -> list[Any]:
        from .ner import encode_ner  # lazy: torch

        return encode_ner(self.tok, records, self.label2id, self.cfg.max_length, is_unspaced)

    def build_model(self) -> Any:
        from .ner import EncoderCRFTagger  # lazy: torch

        return EncoderCRFTagger.from_pretrained(self.cfg.model, self.labels)

    def is_new(self, name: str) -> bool:
        return name.startswith("classifier.")

    def length(self, enc: Any) -> int:
        return len(enc.input_ids)

    def collate(self, batch: list[Any]) -> dict[str, Any]:
        from .ner import collate_ner  # lazy: torch

        return collate_ner(batch, self.tok.pad_token_id)

    def loss_of(self, out: Any) -> Any:
        return out  # the tagger's forward is its loss (mean NLL per sentence)

    def predict_batch(self, model: Any, batch: list[Any], device: Any) -> list[Any]:
        from .ner import collate_ner  # lazy: torch

        t = {k: v.to(device) for k, v in collate_ner(batch, self.tok.pad_token_id, with_labels=False).items()}
        return model.decode(**t)

    def finish(self, records: list[dict[str, Any]], encs: list[Any], preds: list[Any]) -> tuple[list[Any], dict]:
        from .ner import decode_words  # lazy: torch

        merge = [self.cfg.merge_adjacent_unspaced and is_unspaced(r["lang"]) for r in records]
        words = decode_words(encs, preds, self.labels, [len(r["tokens"]) for r in records], merge)
        return words, ner_scores([r["tags"] for r in records], words)

    def rows(self, records: list[dict[str, Any]], preds: list[Any]) -> list[dict[str, Any]]:
        return [
            {"id": r["id"], "lang": r["lang"], "tokens": r["tokens"], "tags": r["tags"], "pred": p}
            for r, p in zip(records, preds)
        ]

    def after_step(self, model: Any) -> None:
        model.crf.enforce()

    def eval_context(self, model: Any, encs: list[Any], device: Any) -> Any:
        return contextlib.nullcontext()

    def no_decay(self, name: str) -> bool:
        return name.startswith("crf.")


class _SeqClsTask:
    """RE (binary, positive-class F1) and DC (multi-label, micro-F1)."""

    def __init__(
        self, cfg: FinetuneConfig, tokenizer: Any, all_sets: list[list[dict[str, Any]]], num_labels: int | None = None
    ) -> None:
        """``num_labels``: a saved model's output count (prediction); else checked from the data's labels."""
        self.cfg, self.tok = cfg, tokenizer
        self.multilabel = cfg.task == "dc"
        self.n_truncated = 0
        if num_labels is not None:
            self.num_labels = num_labels
            return
        labels = [r["label"] for s in all_sets for r in s]
        if self.multilabel:
            widths = {len(x) if isinstance(x, list) else -1 for x in labels}
            if len(widths) != 1 or -1 in widths:
                raise KbioxlmError("task 'dc' needs every record's label to be a 0/1 list of the same length")
            self.num_labels = widths.pop()
        else:
            if any(isinstance(x, list) for x in labels):
                raise KbioxlmError("task 're' needs integer labels (got a list: use --task dc for multi-label)")
            bad = next((x for x in labels if x not in (0, 1) or isinstance(x, bool)), None)
            if bad is not None:
                raise KbioxlmError(f"task 're' labels are 0 or 1 (binary relation, positive-class F1), got {bad!r}")
            self.num_labels = 2

    def encode(self, records: list[dict[str, Any]]) -> list[Any]:
        from .seqcls import encode_seqcls  # lazy: torch

        encs = encode_seqcls(self.tok, records, self.cfg.max_length)
        n = sum(e.truncated for e in encs)
        if n:
            log.info("%d of %d texts truncated to %d pieces", n, len(encs), self.cfg.max_length)
        return encs

    def build_model(self) -> Any:
        from .seqcls import build_normalized_model, build_seqcls_model  # lazy: torch

        if self.cfg.head not in ("model", "normalized"):
            raise KbioxlmError(f"unknown head {self.cfg.head!r} (expected 'model' or 'normalized')")
        if self.cfg.adapt_norm and self.cfg.head != "normalized":
            raise KbioxlmError("adapt_norm needs head: normalized (the only head with statistics to adapt)")
        build = build_normalized_model if self.cfg.head == "normalized" else build_seqcls_model
        model, self.new_params = build(self.cfg.model, self.num_labels, self.multilabel, self.cfg.classifier_dropout)
        return model

    def is_new(self, name: str) -> bool:
        return name in self.new_params

    def length(self, enc: Any) -> int:
        return len(enc.input_ids)

    def collate(self, batch: list[Any]) -> dict[str, Any]:
        from .seqcls import collate_seqcls  # lazy: torch

        return collate_seqcls(batch, self.tok.pad_token_id, self.multilabel)

    def loss_of(self, out: Any) -> Any:
        return out.loss

    def predict_batch(self, model: Any, batch: list[Any], device: Any) -> list[Any]:
        from .seqcls import collate_seqcls, predict_seqcls  # lazy: torch

        t = collate_seqcls(batch, self.tok.pad_token_id, self.multilabel)
        logits = model(input_ids=t["input_ids"].to(device), attention_mask=t["attention_mask"].to(device)).logits
        labels, scores = predict_seqcls(logits.float().cpu(), self.multilabel, self.cfg.threshold)
        return list(zip(labels, scores))

    def finish(self, records: list[dict[str, Any]], encs: list[Any], preds: list[Any]) -> tuple[list[Any], dict]:
        gold = [r["label"] for r in records]
        labels = [p[0] for p in preds]
        scores = multilabel_scores(gold, labels) if self.multilabel else binary_scores(gold, labels)
        return preds, scores

    def rows(self, records: list[dict[str, Any]], preds: list[Any]) -> list[dict[str, Any]]:
        return [
            {"id": r["id"], "lang": r["lang"], "label": r["label"], "pred": p[0], "scores": [round(x, 6) for x in p[1]]}
            for r, p in zip(records, preds)
        ]

    def after_step(self, model: Any) -> None:
        pass

    def eval_context(self, model: Any, encs: list[Any], device: Any) -> Any:
        """AdaBN for the normalized head (``adapt_norm``), else nothing."""
        if not self.cfg.adapt_norm:
            return contextlib.nullcontext()
        from .seqcls import collate_seqcls  # lazy: torch

        bs = self.cfg.eval_batch_size
        batches = (
            {
                k: v.to(device)
                for k, v in collate_seqcls(encs[i : i + bs], self.tok.pad_token_id, self.multilabel).items()
            }
            for i in range(0, len(encs), bs)
        )
        return model.statistics_of(batches)

    def no_decay(self, name: str) -> bool:
        return False


# ------------------------------------------------------------------------------------------ loop


def _evaluate(
    task: Any,
    model: Any,
    records: list[dict[str, Any]],
    encs: list[Any],
    bs: int,
    device: Any,
    desc: str,
    progress: bool,
    accelerator: Any = None,
) -> tuple[list[Any], dict[str, Any], float]:
    """Predict in length-sorted batches (little padding), restore order, score; returns seconds too.

    With an ``accelerator`` (fine-tuning): under its autocast, and over several processes process
    ``r`` predicts batches ``r, r+n, ...`` of the same batch list, so each batch is the one a single
    process predicts; the predictions are gathered and every process returns the whole result."""
    # lazy: torch
    import torch

    from ..engine import gather_objects

    model.eval()
    order = sorted(range(len(encs)), key=lambda i: task.length(encs[i]))
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    autocast = accelerator.autocast() if accelerator is not None else contextlib.nullcontext()
    mine: list[tuple[int, Any]] = []
    t0 = time.perf_counter()
    with autocast, task.eval_context(model, encs, device), torch.inference_mode():
        for s in progress_bar(
            range(0, len(order), bs)[rank::world], desc=desc, enabled=progress and rank == 0, leave=False
        ):
            idx = order[s : s + bs]
            mine.extend(zip(idx, task.predict_batch(model, [encs[i] for i in idx], device)))
    if world > 1:
        mine = [pair for part in gather_objects(accelerator, mine) for pair in part]
    preds: list[Any] = [None] * len(encs)
    for i, p in mine:
        preds[i] = p
    secs = time.perf_counter() - t0
    out, scores = task.finish(records, encs, preds)
    return out, scores, secs


def _train_batches(lengths: list[int], bs: int, gen: Any, group_by_length: bool) -> list[list[int]]:
    """Shuffled batches; with ``group_by_length`` each window of 50 batches is sorted by length first.

    Grouping similar lengths (as transformers' ``group_by_length``) cuts padding, which on CPU is
    most of the wasted time for sentence-level NER/RE, while batch order stays random.
    """
    import torch  # lazy: torch

    perm = torch.randperm(len(lengths), generator=gen).tolist()
    if group_by_length:
        win = bs * 50
        perm = [i for s in range(0, len(perm), win) for i in sorted(perm[s : s + win], key=lambda i: -lengths[i])]
    batches = [perm[s : s + bs] for s in range(0, len(perm), bs)]
    if group_by_length:
        order = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[i] for i in order]
    return batches


MIXED_PRECISION = ("no", "bf16")


def _make_accelerator(cfg: FinetuneConfig) -> Any:
    """The run's :class:`accelerate.Accelerator`: CPU unless CUDA is there (or ``device: cpu``), so
    that ``accelerate launch`` / ``torchrun`` on CPUs gives gloo processes, as in pretraining."""
    # lazy: torch, accelerate
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from ..engine import reset_accelerate_state

    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.mixed_precision == "bf16" and not cpu and not torch.cuda.is_bf16_supported():
        raise KbioxlmError("mixed_precision bf16: this GPU has no bfloat16 support; use mixed_precision no")
    if not cpu and cfg.device and cfg.device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(cfg.device))
    reset_accelerate_state()
    # The NER tagger's encoder keeps its pooler, which its loss never reaches: DDP must look for
    # unused parameters there (the RE/DC heads use every parameter; looking costs a graph walk a step).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.task == "ner")
    accelerator = Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision, kwargs_handlers=[ddp])
    if getattr(accelerator.state, "deepspeed_plugin", None) is not None:
        raise KbioxlmError("fine-tuning does not run under DeepSpeed; launch it without --use_deepspeed")
    return accelerator


def _share(idx: list[int], rank: int, world: int) -> tuple[list[int], float]:
    """This process's part of a training batch, and the weight of its loss.

    ``batch_size`` stays the examples per optimiser step whatever the number of processes: process
    ``r`` takes every n-th example from the r-th on. DDP averages the processes' gradients, so each
    mean loss is weighted by ``n * len(part) / len(batch)`` to give the gradient of the whole
    batch's mean loss. A process with no example (a last batch smaller than the number of
    processes) runs the first one at weight 0: it must still take part in the gradient exchange."""
    if world == 1:
        return idx, 1.0
    part = idx[rank::world]
    if not part:
        return idx[:1], 0.0
    return part, world * len(part) / len(idx)


def _scaled(loss_of: Callable[[Any], Any], weight: float) -> Callable[[Any], Any]:
    """``loss_of`` times ``weight`` (a process's share of the batch, see :func:`_share`)."""
    return lambda out: loss_of(out) * weight


def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Train, select on dev, test; write ``results.json`` + predictions when ``cfg.out`` is set."""
    if cfg.task not in FINETUNE_TASKS:
        raise KbioxlmError(f"unknown task {cfg.task!r} (choose from {', '.join(FINETUNE_TASKS)})")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.max_length < 8:
        raise KbioxlmError("epochs and batch size must be >= 1 and max_length >= 8")
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise KbioxlmError(f"mixed_precision must be {' or '.join(MIXED_PRECISION)}, got {cfg.mixed_precision!r}")
    if cfg.out:
        check_writable_dir(cfg.out)  # now, not after the training
        if cfg.save_model:
            check_output_dir(Path(cfg.out) / "model", MODEL_MARKER, True, MODEL_WHAT)
    # lazy: torch, transformers
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup, set_seed

    from ..engine import broadcast_buffers, gather_objects, micro_step, weight_digest

    accelerator = _make_accelerator(cfg)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // world))

    train = _subsample(load_finetune_records(cfg.task, cfg.train, cfg.train_lang), cfg.max_train_examples, cfg.seed)
    dev = load_finetune_records(cfg.task, cfg.dev, cfg.dev_lang) if cfg.dev is not None else []
    test = load_finetune_records(cfg.task, cfg.test, cfg.test_lang) if cfg.test is not None else []
    extra = {name: load_finetune_records(cfg.task, d, None) for name, d in cfg.extra_tests.items()}
    if not train:
        raise KbioxlmError("empty training set")
    if cfg.task == "ner":
        _check_entity_types(
            cfg,
            train,
            [("dev", cfg.dev, dev), ("test", cfg.test, test), *[(k, cfg.extra_tests[k], v) for k, v in extra.items()]],
        )
    check_model_name(cfg.model, "model")
    check_model_name(cfg.tokenizer, "tokenizer")

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.model)
    except (OSError, ValueError) as exc:
        raise load_error(cfg.tokenizer or cfg.model, exc, "tokenizer") from exc
    if not getattr(tokenizer, "is_fast", True):
        raise KbioxlmError("a fast tokenizer (offset mappings) is required")
    all_sets = [train, dev, test, *extra.values()]
    task: Any = _NERTask(cfg, tokenizer, all_sets) if cfg.task == "ner" else _SeqClsTask(cfg, tokenizer, all_sets)

    t_start = time.perf_counter()
    train_enc = task.encode(train)
    dev_enc = task.encode(dev) if dev else []
    test_enc = task.encode(test) if test else []
    extra_enc = {k: task.encode(v) for k, v in extra.items()}

    set_seed(cfg.seed)
    try:
        model = task.build_model()
    except (OSError, ValueError) as exc:
        raise load_error(cfg.model, exc, "model") from exc
    model.to(device)

    decay, no_decay, crf, head = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("crf."):
            crf.append(p)
        elif cfg.head_lr is not None and task.is_new(name):
            head.append(p)
        elif p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or task.no_decay(name):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if crf:
        groups.append({"params": crf, "weight_decay": 0.0, "lr": cfg.crf_lr})
    if head:
        groups.append({"params": head, "weight_decay": cfg.weight_decay, "lr": cfg.head_lr})
    optim = torch.optim.AdamW(groups, lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_enc) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = get_linear_schedule_with_warmup(optim, int(cfg.warmup_ratio * total), total)
    # The engine's model (DDP over several processes) trains; ``model``, the module itself, is
    # evaluated, snapshotted and saved (the same parameters).
    trained, optim = accelerator.prepare(model, optim)
    say = log.info if main else log.debug  # one process reports

    gen = torch.Generator().manual_seed(cfg.seed)  # same seed in every process: same batches
    history: list[dict[str, Any]] = []
    best_f1, best_epoch, best_state, bad = -1.0, 0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        trained.train()
        batches = _train_batches([task.length(e) for e in train_enc], cfg.batch_size, gen, cfg.group_by_length)
        bar = progress_bar(
            batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", enabled=cfg.progress and main, leave=False
        )
        running = 0.0
        for n, idx in enumerate(bar, 1):
            part, weight = _share(idx, rank, world)
            out, _ = micro_step(
                accelerator,
                trained,
                optim,
                task.collate([train_enc[i] for i in part]),
                cfg.max_grad_norm,
                task.loss_of if world == 1 else _scaled(task.loss_of, weight),
            )
            loss = task.loss_of(out).detach()
            if world > 1:  # the whole batch's mean loss, the same in every process
                loss = accelerator.reduce(loss * (weight / world), reduction="sum")
            if not torch.isfinite(loss):
                raise KbioxlmError(f"non-finite loss at epoch {epoch}, step {n} (lower --lr?)")
            sched.step()
            task.after_step(model)
            running += loss.item()
            bar.set_postfix(loss=f"{running / n:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        broadcast_buffers(accelerator, model)
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": running / max(1, steps_per_epoch),
            "lr_end": sched.get_last_lr()[0],
            "steps": sched.last_epoch,
        }
        if dev_enc:
            _, dscores, _ = _evaluate(
                task, model, dev, dev_enc, cfg.eval_batch_size, device, "dev", cfg.progress, accelerator
            )
            entry["dev_f1"] = dscores["f1"]
            say("epoch %d: train loss %.4f, dev F1 %.2f", epoch, entry["train_loss"], dscores["f1"])
            improved = dscores["f1"] > best_f1
        else:
            say("epoch %d: train loss %.4f (no dev set: last epoch kept)", epoch, entry["train_loss"])
            improved = True
        if cfg.log_test_each_epoch:  # reporting only: selection never looks at these
            for name, recs, encs in [("test", test, test_enc)] + [(k, extra[k], extra_enc[k]) for k in extra]:
                if recs:
                    _, ts, _ = _evaluate(
                        task, model, recs, encs, cfg.eval_batch_size, device, name, cfg.progress, accelerator
                    )
                    entry[f"{name}_f1"] = ts["f1"]
                    say("epoch %d: %s F1 %.2f (not used for selection)", epoch, name, ts["f1"])
        history.append(entry)
        if improved:
            best_f1, best_epoch, bad = entry.get("dev_f1", -1.0), epoch, 0
            if epoch < cfg.epochs:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                best_state = None  # the live weights are the best ones
        else:
            bad += 1
            if cfg.early_stopping_patience is not None and bad >= cfg.early_stopping_patience:
                say("early stop after epoch %d (best epoch %d)", epoch, best_epoch)
                break
    if best_state is not None and best_epoch != history[-1]["epoch"]:
        model.load_state_dict(best_state)
    if hasattr(model, "crf"):
        model.crf.enforce()
    train_seconds = time.perf_counter() - t_start

    results: dict[str, Any] = {
        "task": cfg.task,
        "metric": METRIC_NAMES[cfg.task],
        "f1": None,
        "precision": None,
        "recall": None,
        "n_test": len(test),
        "test_lang": sorted({r["lang"] for r in test}),
        "train_lang": sorted({r["lang"] for r in train}),
        "n_train": len(train),
        "n_dev": len(dev),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "dev_f1": best_f1 if dev else None,
        "history": history,
        "train_seconds": round(train_seconds, 2),
        "config": cfg.describe(),
    }
    if world > 1:  # equal digests: every process holds the model that is scored and saved
        results["processes"] = world
        results["rank_weight_digests"] = gather_objects(accelerator, weight_digest(model))
    pred_rows: list[dict[str, Any]] = []
    if test:
        preds, scores, secs = _evaluate(
            task, model, test, test_enc, cfg.eval_batch_size, device, "test", cfg.progress, accelerator
        )
        results.update({k: v for k, v in scores.items()})
        results["test_seconds"] = round(secs, 3)
        results["test_examples_per_s"] = round(len(test) / secs, 2) if secs > 0 else None
        pred_rows = task.rows(test, preds)
    extra_rows: dict[str, list[dict[str, Any]]] = {}
    if extra:
        results["extra_tests"] = {}
        for name, recs in extra.items():
            preds, scores, _ = _evaluate(
                task, model, recs, extra_enc[name], cfg.eval_batch_size, device, name, cfg.progress, accelerator
            )
            results["extra_tests"][name] = {"n_test": len(recs), **scores}
            extra_rows[name] = task.rows(recs, preds)
    if cfg.out and main:  # every process holds these results; the main one writes them
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        if test:
            write_jsonl(out / "predictions.jsonl", pred_rows)
        for name, rows in extra_rows.items():
            write_jsonl(out / f"predictions.{name}.jsonl", rows)
        if cfg.save_model:
            _save_model(model, tokenizer, out / "model", task, cfg, results)
        write_json(out / "results.json", results)
    accelerator.wait_for_everyone()  # the outputs exist when any process returns
    return results


MODEL_MARKER = "kbioxlm_task.json"
"""Written last into a saved fine-tuned model: what ``kbioxlm predict`` needs to run it exactly as
``finetune`` scored it (task, head, labels, max_length, decision rule), and the files written."""
MODEL_WHAT = "fine-tuned model (finetune --save-model)"


def default_label_names(task: str, num_labels: int) -> list[str]:
    """Class names for a saved RE/DC config when none are given.

    RE: ``"0"``/``"1"``, the labels as GAD writes them (1 = the gene and disease are associated).
    DC: the HoC hallmarks in the release's column order when there are 10 outputs (the toolkit's
    DC dataset), else the column numbers.
    """
    if task == "re":
        return ["0", "1"]
    if num_labels == len(HOC_LABELS):
        return list(HOC_LABELS)
    return [str(j) for j in range(num_labels)]


def _save_model(
    model: Any, tokenizer: Any, path: Path, task: Any, cfg: FinetuneConfig, results: dict[str, Any]
) -> None:
    """Save the selected model as a Hugging Face model of the task (stock class + its labels),
    the parts the stock class lacks beside it (CRF / exact normalized head, safetensors), a model
    card and the task marker; built in a temporary folder and renamed into place.

    Why the stock layout: ``AutoModelForTokenClassification`` / ``AutoModelForSequenceClassification``
    and ``pipeline(...)`` then give the task's labels instead of a random two-label head.
    """
    from .seqcls import save_seqcls_model  # lazy: torch

    tmp = make_temp_dir(path)
    try:
        if cfg.task == "ner":
            model.save_pretrained(tmp)
            labels = list(model.labels)
        else:
            names = list(cfg.label_names) if cfg.label_names else default_label_names(cfg.task, task.num_labels)
            if len(names) != task.num_labels:
                raise KbioxlmError(f"label_names has {len(names)} names for {task.num_labels} outputs")
            save_seqcls_model(model, tmp, dict(enumerate(names)))
            labels = names
        tokenizer.save_pretrained(tmp)
        info = {
            "format": "kbioxlm-finetuned",
            "version": 1,
            "task": cfg.task,
            "head": "crf" if cfg.task == "ner" else cfg.head,
            "labels": labels,
            "max_length": cfg.max_length,
            "eval_batch_size": cfg.eval_batch_size,
            "merge_adjacent_unspaced": cfg.merge_adjacent_unspaced,
            "threshold": cfg.threshold,
            "adapt_norm": cfg.adapt_norm,
            "base_model": str(cfg.model),
            "metric": results.get("metric"),
            "test_f1": results.get("f1"),
        }
        (tmp / "README.md").write_text(_model_card(cfg, results, labels), encoding="utf-8")
        write_marker(tmp, MODEL_MARKER, info)
        replace_dir(tmp, path, MODEL_MARKER, True, MODEL_WHAT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _model_card(cfg: FinetuneConfig, results: dict[str, Any], labels: list[str]) -> str:
    """Card of a fine-tuned model: metadata for the hub, the test scores this run printed, how to load."""
    # lazy: huggingface_hub (the model card), only when a model is saved
    from huggingface_hub import ModelCardData

    from ..modelcard import TAGS, base_license, card_base_model, render, table

    pipeline_tag = "token-classification" if cfg.task == "ner" else "text-classification"
    langs = sorted({*results.get("train_lang", []), *results.get("test_lang", [])})
    files = [cfg.train, cfg.dev, cfg.test]
    datasets = sorted({Path(os.fspath(f)).name for f in files if isinstance(f, (str, os.PathLike))})
    data = ModelCardData(
        language=langs or None,
        license=base_license(cfg.model),
        base_model=card_base_model(cfg.model),
        datasets=datasets or None,
        pipeline_tag=pipeline_tag,
        library_name="transformers",
        tags=[*TAGS, cfg.task],
        metrics=["f1"],
    )
    stock = "AutoModelForTokenClassification" if cfg.task == "ner" else "AutoModelForSequenceClassification"

    def pct(v: Any) -> str:  # percentages, two decimals like the summary line finetune prints
        return "–" if v is None else f"{v:.2f}"

    rows = []
    if results.get("f1") is not None:
        rows.append(
            [
                "test",
                ", ".join(results.get("test_lang", [])),
                results.get("n_test"),
                pct(results["f1"]),
                pct(results.get("precision")),
                pct(results.get("recall")),
            ]
        )
    for name, r in (results.get("extra_tests") or {}).items():
        rows.append([name, "", r.get("n_test"), pct(r.get("f1")), pct(r.get("precision")), pct(r.get("recall"))])
    lines = [
        f"# {cfg.task.upper()} model fine-tuned with kbioxlm",
        "",
        f"Fine-tuned by `kbioxlm finetune --task {cfg.task} --save-model` from `{cfg.model}`; "
        f"{results.get('n_train')} training examples ({', '.join(results.get('train_lang', []))}), "
        f"best epoch {results.get('best_epoch')} of {results.get('epochs_run')} on the dev set.",
        "",
        f"Labels: {', '.join(f'`{x}`' for x in labels)}.",
        "",
        f"## Test scores ({results.get('metric')}, percent)",
        "",
    ]
    lines += table(["set", "language", "examples", "F1", "precision", "recall"], rows) if rows else ["(no test set)"]
    full = {
        "ner": "the CRF (Viterbi decoding under BIO constraints, `crf.safetensors`)",
        "model": "the task's decision rule (argmax; DC: sigmoid >= threshold)",
        "normalized": "the `normalized` head (masked mean + standardisation + linear, `seqcls_head.safetensors`)",
    }
    key = "ner" if cfg.task == "ner" else cfg.head
    lines += [
        "",
        "## Use",
        "",
        f'`{stock}` and `pipeline("{pipeline_tag}")` load this folder with the labels above.',
    ]
    if cfg.task == "ner":
        lines.append(
            "They give the argmax of the emission layer for every piece; the scores above come from "
            f"{full[key]}, which `kbioxlm predict` runs:"
        )
    elif cfg.head == "normalized":
        lines.append(
            "The stock class pools differently (its pooler / head parts are reported as newly initialised); "
            "its `classifier` applied to the masked mean of the encoder's last hidden states gives this "
            f"head's logits where the stock head is one linear layer. The scores above come from {full[key]}, "
            "which `kbioxlm predict` runs:"
        )
    else:
        lines.append(f"The stock class is the full model; `kbioxlm predict` applies {full[key]} and scores:")
    lines += ["", "```", "kbioxlm predict --model THIS_FOLDER --input FILE --out PREDICTIONS", "```", ""]
    return render(data, "\n".join(lines))
