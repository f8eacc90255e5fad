"""Continued pretraining loop on :class:`accelerate.Accelerator` (docs/design.md,
"Pretraining").

Why accelerate rather than the HF ``Trainer``: the same loop then runs unchanged on one CPU, under
``torchrun`` (DDP, gloo or NCCL) and under ``accelerate launch`` with DeepSpeed, while exact
resume stays in our hands: the collator's masking RNG and the data position are not objects the
``Trainer`` knows how to checkpoint. :mod:`.checkpoint` stores model, optimizer, the LR scheduler
and every process's Python/NumPy/torch RNG states in safetensors + JSON (never pickle); this module
adds the data position (``trainer_state.json``) and each process's collator RNG (``collator_rank<i>.json``).

Outputs under ``output_dir``: ``checkpoints/checkpoint-<step>/``, ``eval.jsonl`` (per-task
masked-token accuracy and pair accuracy on the held-out split), ``train_log.jsonl``, tensorboard
logs, ``kbioxlm_config.json`` (read by ``kbioxlm export`` for the model card) and ``final/``
(:meth:`KnowledgeAnchoredModel.save_pretrained` plus the tokenizer).

torch, accelerate and transformers (and :mod:`.model`, :mod:`.checkpoint` and :mod:`kbioxlm.engine`,
which import them) are imported inside the functions that use them (marked
``# lazy``): ``kbioxlm pretrain --help`` lists :data:`DEFAULTS` from this module without loading torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from ..config import Settings
from ..errors import KbioxlmError
from ..hub import check_model_name, load_tokenizer
from ..io import SkipCounter, atomic_write, check_writable_dir, dumps, write_json
from ..progress import progress
from . import PRETRAIN_TASKS
from .collator import KnowledgeCollator
from .data import (
    DEFAULT_MIX,
    CollatedBatches,
    DataPosition,
    MixedSchedule,
    eval_batches,
    load_pretrain_records,
    normalise_mix,
    parse_train_files,
    resolve_path,
    split_eval_records,
)
from .vocab import load_kept_ids

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Every pretraining setting with its default; a YAML config and ``key=value`` overrides set them
    (:func:`load_pretrain_config`; ``kbioxlm pretrain --help`` lists them)."""

    # model and vocabulary
    model: str | None = None  # name or path of an encoder checkpoint (AutoModel-loadable)
    model_config: dict[str, Any] | None = None  # or a config dict (model_type + sizes) for a randomly initialised model
    tokenizer: str | None = None  # defaults to `model`
    kept_ids: str | None = None  # reduced output vocabulary from `kbioxlm vocab reduce`
    loss_weights: dict[str, float] | None = None  # {task: weight}; model default when null (L = Le + Lf + Lp + Lmlm)
    # data
    train_files: str | list[str] | None = (
        None  # comma-separated or list; `path#mlm` reads entity records as monolingual text
    )
    eval_files: str | list[str] | None = None  # held-out records; when null a split of train_files
    eval_fraction: float = 0.02
    eval_max_per_task: int = 200
    skip_invalid: bool = False
    mix: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MIX)
    )  # task proportions (paper: monolingual : knowledge = 1 : 1)
    epoch_size: int | None = None  # draws per epoch of the mixed schedule (default: number of train records)
    # masking
    max_length: int = 128
    mlm_probability: float = 0.15
    wwm_entity_ratio: float = 0.5  # share of the Document masking budget for whole entities (paper A.1: 1:1)
    max_entity_tokens: int | None = None  # paper A.1: 3
    mask_decision: str = "unit"  # unit | token: 80/10/10 drawn once per masked entity/word, or per piece
    entity_window: str = "switched"  # switched | first: where an over-long entity record is cut
    align_max_length: int = 32  # pieces per name of an `align` record
    # model options
    pair_pooling: str = "cls"  # cls | mean: what the passage-pair head reads
    align_temperature: float = 0.05  # InfoNCE temperature of the `align` task
    # protecting the encoder (docs/pretrain.md, "Recipe levers")
    freeze_encoder: bool = False  # head warm-up stage: only the heads train
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # the lowest N transformer layers stay as they are
    head_learning_rate: float | None = None  # learning rate of the MLM and pair heads (default: learning_rate)
    # optimisation
    output_dir: str | None = None
    max_steps: int = 1000
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    warmup_steps: int = 0
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16 (also `bf16: true` / `fp16: true`)
    bf16: bool = False
    fp16: bool = False
    fused_adamw: bool = True
    # throughput levers (docs/pretrain.md, "Throughput levers")
    attn_implementation: str | None = None  # eager | sdpa | flash_attention_2 | ...; null: transformers' default
    torch_compile: bool | str = False  # true (inductor) or a torch.compile backend name
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    length_bucketing: int = 0  # N > 1: sort each N consecutive global batches by length (less padding)
    dataloader_num_workers: int = 0  # 0: collate in the training process; 1+: in background workers
    mask_seeding: str = "stream"  # stream: one masking RNG stream per process | batch: reseeded per global batch
    # bookkeeping
    logging_steps: int = 10
    eval_steps: int = 500
    save_steps: int = 1000
    save_total_limit: int = 2
    eval_at_start: bool = True
    seed: int = 42
    resume_from_checkpoint: str | None = None  # null | auto | path
    stop_at_step: int | None = (
        None  # end this invocation after that step with a checkpoint (time-sliced jobs); schedule follows max_steps
    )
    overwrite_output_dir: bool = False
    report_to: str = "tensorboard"  # tensorboard | wandb | mlflow | ... (comma-separated) | none
    num_threads: int | None = None  # torch CPU threads per process
    cpu: bool = False  # force CPU even when a GPU is visible


DEFAULTS: dict[str, Any] = asdict(PretrainConfig())
"""The settings' defaults by name (``pretrain --help``, the loader's starting point)."""
ALIASES = {"lr": "learning_rate", "batch_size": "per_device_train_batch_size"}
DICT_KEYS = ("model_config", "loss_weights", "mix")


# ---------------------------------------------------------------------------------------- config
def load_pretrain_config(
    path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()
) -> PretrainConfig:
    """YAML config + ``key=value`` overrides (values parsed as YAML; dotted keys reach into mappings).

    Unknown keys are errors: a typo such as ``learning_rte=1e-4`` must not silently train with the
    default learning rate.
    """
    return load_pretrain_settings(path, overrides)[0]


def load_pretrain_settings(
    path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[PretrainConfig, Settings]:
    """:func:`load_pretrain_config` and where each key came from (:class:`kbioxlm.config.Settings`)."""
    settings = config.load_settings(path, overrides, DEFAULTS, aliases=ALIASES, mappings=DICT_KEYS)
    try:
        return _check(settings.values), settings
    except KbioxlmError as exc:
        raise settings.locate(exc) from None


FLOAT_KEYS = (
    "learning_rate",
    "weight_decay",
    "align_temperature",
    "mlm_probability",
    "wwm_entity_ratio",
    "eval_fraction",
    "max_grad_norm",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
)
INT_KEYS = (
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "logging_steps",
    "stop_at_step",
    "eval_steps",
    "save_steps",
    "warmup_steps",
    "seed",
    "eval_max_per_task",
    "align_max_length",
    "freeze_layers",
    "length_bucketing",
    "dataloader_num_workers",
)


def _coerce_numbers(cfg: dict[str, Any]) -> None:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string and ``150_000``/``1.5e5`` vary; accept them."""
    for key in FLOAT_KEYS:
        v = cfg[key]
        if isinstance(v, str):
            try:
                cfg[key] = float(v)
            except ValueError:
                raise KbioxlmError(f"config: {key} must be a number, got {v!r}") from None
    for key in INT_KEYS:
        v = cfg[key]
        if v is None and key == "stop_at_step":
            continue
        if isinstance(v, (str, float)) and not isinstance(v, bool):
            try:
                f = float(str(v).replace("_", ""))
            except ValueError:
                raise KbioxlmError(f"config: {key} must be an integer, got {v!r}") from None
            if not f.is_integer():
                raise KbioxlmError(f"config: {key} must be an integer, got {v!r}")
            cfg[key] = int(f)


def _check(cfg: dict[str, Any]) -> PretrainConfig:
    _coerce_numbers(cfg)
    if not cfg["output_dir"]:
        raise KbioxlmError("config: output_dir is required")
    if not cfg["model"] and not cfg["model_config"]:
        raise KbioxlmError("config: set `model` (checkpoint name/path) or `model_config` (random init)")
    if cfg["model"] and cfg["model_config"]:
        raise KbioxlmError("config: set only one of `model` and `model_config`")
    if cfg["model_config"] is not None and not isinstance(cfg["model_config"], dict):
        raise KbioxlmError("config: model_config must be a mapping with model_type and sizes")
    if not cfg["tokenizer"]:
        if not cfg["model"]:
            raise KbioxlmError("config: `tokenizer` is required with model_config")
        cfg["tokenizer"] = cfg["model"]
    if not parse_train_files(cfg["train_files"]):
        raise KbioxlmError("config: train_files is required (comma-separated JSONL record files)")
    for key in (
        "max_steps",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_length",
    ):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise KbioxlmError(f"config: {key} must be a positive integer, got {cfg[key]!r}")
    for key in ("logging_steps", "eval_steps", "save_steps", "warmup_steps", "seed"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise KbioxlmError(f"config: {key} must be a non-negative integer, got {cfg[key]!r}")
    for key in FLOAT_KEYS:
        if not isinstance(cfg[key], (int, float)) or isinstance(cfg[key], bool):
            raise KbioxlmError(f"config: {key} must be a number, got {cfg[key]!r}")
    for key, allowed in (
        ("mask_decision", ("unit", "token")),
        ("entity_window", ("switched", "first")),
        ("pair_pooling", ("cls", "mean")),
    ):
        if cfg[key] not in allowed:
            raise KbioxlmError(f"config: {key} must be one of {', '.join(allowed)}, got {cfg[key]!r}")
    for key in ("length_bucketing", "dataloader_num_workers"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 0:
            raise KbioxlmError(f"config: {key} must be a non-negative integer, got {cfg[key]!r}")
    if cfg["mask_seeding"] not in ("stream", "batch"):
        raise KbioxlmError(f"config: mask_seeding must be stream or batch, got {cfg['mask_seeding']!r}")
    if cfg["dataloader_num_workers"] > 1 and cfg["mask_seeding"] != "batch":
        raise KbioxlmError(
            "config: dataloader_num_workers > 1 needs mask_seeding=batch (one masking stream cannot be split over workers)"
        )
    for key in ("gradient_checkpointing",):
        if not isinstance(cfg[key], bool):
            raise KbioxlmError(f"config: {key} must be true or false, got {cfg[key]!r}")
    tc = cfg["torch_compile"]
    if tc is not None and not isinstance(tc, (bool, str)):
        raise KbioxlmError(f"config: torch_compile must be true, false or a backend name, got {tc!r}")
    if isinstance(tc, str):
        import torch  # lazy: torch

        if tc not in torch._dynamo.list_backends(exclude_tags=()):
            raise KbioxlmError(
                f"config: torch_compile backend {tc!r} unknown (known: {', '.join(torch._dynamo.list_backends())})"
            )
    ai = cfg["attn_implementation"]
    if ai is not None and not isinstance(ai, str):
        raise KbioxlmError(f"config: attn_implementation must be a name such as sdpa or eager, got {ai!r}")
    cfg["report_to"] = _check_report_to(cfg["report_to"])
    if cfg["freeze_layers"] < 0 or cfg["align_max_length"] < 4:
        raise KbioxlmError("config: freeze_layers must be >= 0 and align_max_length >= 4")
    if not cfg["align_temperature"] > 0:
        raise KbioxlmError(f"config: align_temperature must be > 0, got {cfg['align_temperature']!r}")
    hlr = cfg["head_learning_rate"]
    if hlr is not None:
        try:
            cfg["head_learning_rate"] = float(hlr)
        except (TypeError, ValueError):
            raise KbioxlmError(f"config: head_learning_rate must be a number, got {hlr!r}") from None
    for key in ("freeze_encoder", "freeze_embeddings"):
        if not isinstance(cfg[key], bool):
            raise KbioxlmError(f"config: {key} must be true or false, got {cfg[key]!r}")
    mp = str(cfg["mixed_precision"] or "no").lower()
    if cfg["bf16"] and cfg["fp16"]:
        raise KbioxlmError("config: set only one of bf16 and fp16")
    if cfg["bf16"]:
        mp = "bf16"
    elif cfg["fp16"]:
        mp = "fp16"
    if mp not in ("no", "bf16", "fp16"):
        raise KbioxlmError(f"config: mixed_precision must be no, bf16 or fp16, got {mp!r}")
    cfg["mixed_precision"] = mp
    rfc = cfg["resume_from_checkpoint"]
    if rfc is not None and not isinstance(rfc, str):
        cfg["resume_from_checkpoint"] = None if rfc is False else "auto" if rfc is True else str(rfc)
    return PretrainConfig(**cfg)


def _check_report_to(value: Any) -> str:
    """``report_to`` as a comma-separated string of trackers, each known to accelerate and installed.

    accelerate itself drops a tracker whose package is missing with only a log warning: a run asked
    to report to wandb would train for days and report nowhere. So a missing package is a config
    error here, before anything is loaded.
    """
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers  # lazy: accelerate imports torch

    items = value if isinstance(value, (list, tuple)) else str(value if value is not None else "none").split(",")
    names = [str(v).strip().lower() for v in items if str(v).strip()]
    if not names or names == ["none"] or names == ["false"]:
        return "none"
    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise KbioxlmError(
                f"config: report_to {name!r} unknown (known: none, {', '.join(sorted(LOGGER_TYPE_TO_CLASS))})"
            )
        if name not in available:
            raise KbioxlmError(
                f"config: report_to {name!r} needs the {name} package, which is not installed (pip install {name}, or report_to=none)"
            )
    return ",".join(dict.fromkeys(names))


def trackers(cfg: PretrainConfig) -> list[str]:
    """The tracker names of a checked config (empty for ``none``)."""
    return [] if cfg.report_to == "none" else cfg.report_to.split(",")


# ---------------------------------------------------------------------------------------- pieces
def kept_ids_of(cfg: PretrainConfig, vocab_size: int | None = None) -> list[int] | None:
    """The run's reduced output vocabulary (``kept_ids``: a ``kbioxlm vocab reduce`` JSON, read by
    :func:`.vocab.load_kept_ids`), or None when the config sets none."""
    if not cfg.kept_ids:
        return None
    return load_kept_ids(resolve_path(cfg.kept_ids), vocab_size=vocab_size)


def build_model(cfg: PretrainConfig, tokenizer: Any, kept: list[int] | None) -> Any:
    """KnowledgeAnchoredModel from a checkpoint (``model``) or a config dict (``model_config``)."""
    model = _load_model(cfg, tokenizer, kept)
    if cfg.attn_implementation:
        # After construction, so it applies to every way of building (config, checkpoint, kbioxlm run).
        try:
            model.encoder.set_attn_implementation(cfg.attn_implementation)
        except (ValueError, ImportError) as exc:
            raise KbioxlmError(
                f"config: attn_implementation={cfg.attn_implementation} not usable here ({str(exc).splitlines()[0]})"
            ) from None
    if cfg.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise KbioxlmError(f"config: {type(model.encoder).__name__} does not support gradient_checkpointing")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.set_options(pair_pooling=cfg.pair_pooling, align_temperature=cfg.align_temperature)
    frozen = model.freeze(encoder=cfg.freeze_encoder, embeddings=cfg.freeze_embeddings, layers=int(cfg.freeze_layers))
    if frozen:
        n = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        log.info(
            "frozen: %d tensors (%.1f M parameters)%s",
            len(frozen),
            n / 1e6,
            " — the whole encoder (head warm-up)" if cfg.freeze_encoder else "",
        )
    return model


def _load_model(cfg: PretrainConfig, tokenizer: Any, kept: list[int] | None) -> Any:
    from .model import META_FILE, KnowledgeAnchoredModel, _check_weights  # lazy: torch

    weights = cfg.loss_weights or None
    if cfg.model:
        path = resolve_path(cfg.model)
        if (Path(path) / META_FILE).is_file():
            # A kbioxlm training checkpoint (e.g. a head warm-up stage's final/): its heads come
            # along; its output vocabulary must be this run's.
            model = KnowledgeAnchoredModel.load(path)
            if kept is not None and model.kept_ids != kept:
                raise KbioxlmError(f"{path}: its output vocabulary (kept ids) differs from this run's kept_ids")
            if weights:
                model.loss_weights = _check_weights(weights)
            return model
        return KnowledgeAnchoredModel.from_pretrained(path, kept_ids=kept, loss_weights=weights)
    from transformers import AutoConfig  # lazy: transformers

    mc = dict(cfg.model_config or {})  # set when `model` is not (checked by load_pretrain_config)
    model_type = mc.pop("model_type", None)
    if not model_type:
        raise KbioxlmError("config: model_config needs model_type (e.g. xlm-roberta, bert)")
    mc.setdefault("vocab_size", len(tokenizer))
    mc.setdefault("pad_token_id", tokenizer.pad_token_id)
    mc.setdefault("max_position_embeddings", max(514, int(cfg.max_length) + 2))
    try:
        config = AutoConfig.for_model(model_type, **mc)
    except (ValueError, KeyError) as exc:
        raise KbioxlmError(f"config: model_config invalid ({exc})") from exc
    return KnowledgeAnchoredModel.from_config(config, kept_ids=kept, loss_weights=weights)


def make_optimizer(model: Any, cfg: PretrainConfig, device_type: str) -> Any:
    """AdamW without weight decay on biases and LayerNorm weights; fused kernel where torch has one."""
    import torch  # lazy: torch

    # Four groups: (encoder | heads) x (decay | no decay). The heads may have their own learning
    # rate: a fresh MLM head needs a large one, the pretrained encoder a small one.
    lr = float(cfg.learning_rate)
    head_lr = float(cfg.head_learning_rate) if cfg.head_learning_rate is not None else lr
    buckets: dict[tuple[bool, bool], list[Any]] = {(h, d): [] for h in (False, True) for d in (True, False)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = not name.startswith("encoder.")
        decay = not (p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
        buckets[(head, decay)].append(p)
    groups = [
        {"params": ps, "weight_decay": float(cfg.weight_decay) if decay else 0.0, "lr": head_lr if head else lr}
        for (head, decay), ps in buckets.items()
        if ps
    ]
    kwargs: dict[str, Any] = dict(
        lr=float(cfg.learning_rate),
        betas=(float(cfg.adam_beta1), float(cfg.adam_beta2)),
        eps=float(cfg.adam_epsilon),
    )
    if cfg.fused_adamw and device_type in ("cuda", "cpu", "xpu", "mps"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            log.info("fused AdamW unavailable here (%s); using the foreach implementation", exc)
    return torch.optim.AdamW(groups, **kwargs)


def find_checkpoint(output_dir: Path, spec: str | None) -> Path | None:
    """``auto``: latest complete checkpoint under output_dir (None if none); a path: that one."""
    if not spec:
        return None
    if spec != "auto":
        p = Path(spec)
        if not (p / "trainer_state.json").is_file():
            raise KbioxlmError(f"{p}: not a complete checkpoint (no trainer_state.json)")
        return p
    root = output_dir / "checkpoints"
    done = [d for d in root.glob("checkpoint-*") if (d / "trainer_state.json").is_file()] if root.is_dir() else []
    if not done:
        return None
    return max(done, key=lambda d: int(d.name.split("-")[-1]))


def _scalar(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) else json.dumps(v, ensure_ascii=False)


def _truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.is_file():
        return
    keep = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln).get("step", 0) <= max_step
    ]
    with atomic_write(path) as fh:
        fh.writelines(ln + "\n" for ln in keep)


def _append_jsonl(path: Path, rec: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(dumps(rec) + "\n")


def _to_float(v: Any) -> float:
    return float(v.detach().float().item()) if hasattr(v, "detach") else float(v)


def _batch_stream(
    cfg: PretrainConfig,
    schedule: MixedSchedule,
    collator: Any,
    position: DataPosition,
    global_batch: int,
    rank: int,
    per_device: int,
    device: Any,
) -> Any:
    """Iterator of ``(batch, position after it, collator state after it, global batch size)``.

    ``dataloader_num_workers: 0`` collates here, between steps; ``>= 1`` in DataLoader worker
    processes that run ``prefetch`` batches ahead (pinned memory on CUDA, so the copy to the GPU
    overlaps compute). The batches are the same either way (tests/test_pretrain_throughput.py).
    """
    stream = CollatedBatches(
        schedule, collator, position, global_batch, rank, per_device, mask_seeding=cfg.mask_seeding, seed=int(cfg.seed)
    )
    workers = int(cfg.dataloader_num_workers)
    if workers == 0:
        return iter(stream)
    # lazy: torch
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    class _Dataset(IterableDataset):  # DataLoader wants an IterableDataset instance
        def __iter__(self) -> Any:
            return iter(stream)

    # Its own generator: a DataLoader draws its workers' base seed from the global torch RNG
    # otherwise, which would shift dropout after a resume (the RNG restored, then one extra draw).
    loader = DataLoader(
        _Dataset(),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4,
        pin_memory=getattr(device, "type", "cpu") == "cuda",
        persistent_workers=False,
        generator=torch.Generator().manual_seed(int(cfg.seed)),
    )
    return iter(loader)


def _deepspeed(accelerator: Any) -> bool:
    return getattr(accelerator.state, "deepspeed_plugin", None) is not None


def make_collator(
    cfg: PretrainConfig, tokenizer: Any, kept: list[int] | None, seed: Any, random_window: bool = True
) -> Any:
    """The run's :class:`KnowledgeCollator` (training, evaluation and resume build it alike)."""
    return KnowledgeCollator(
        tokenizer,
        max_length=cfg.max_length,
        mlm_probability=cfg.mlm_probability,
        wwm_entity_ratio=cfg.wwm_entity_ratio,
        max_entity_tokens=cfg.max_entity_tokens,
        seed=seed,
        random_token_ids=kept,
        random_window=random_window,
        mask_decision=cfg.mask_decision,
        entity_window=cfg.entity_window,
        align_max_length=cfg.align_max_length,
    )


# ---------------------------------------------------------------------------------------- eval
def evaluate(
    model: Any,
    held: dict[str, list[dict[str, Any]]],
    tokenizer: Any,
    cfg: PretrainConfig,
    accelerator: Any,
    kept: list[int] | None,
) -> dict[str, Any]:
    """Per-task masked-token accuracy and pair accuracy on the held-out split.

    The masks are drawn by a collator with a fixed seed, so every evaluation of a run scores the
    same masked positions and the numbers are comparable over steps (and across runs).
    """
    import torch  # lazy: torch

    coll = make_collator(cfg, tokenizer, kept, [int(cfg.seed), 99991, accelerator.process_index], random_window=False)
    n_t = len(PRETRAIN_TASKS)
    # sums: correct[n_t], count[n_t], pair_correct, pair_count, loss_sum, n_batches, align_correct, align_count
    sums = torch.zeros(2 * n_t + 6, dtype=torch.float64, device=accelerator.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for recs in eval_batches(
            held, cfg.per_device_eval_batch_size, accelerator.process_index, accelerator.num_processes
        ):
            batch = {k: v.to(accelerator.device) for k, v in coll(recs).items()}
            with accelerator.autocast():
                out = model(**batch)
            for i, task in enumerate(PRETRAIN_TASKS):
                sums[i] += _to_float(out.mlm_correct.get(task, 0))
                sums[n_t + i] += _to_float(out.mlm_count.get(task, 0))
            sums[2 * n_t] += _to_float(out.pair_correct)
            sums[2 * n_t + 1] += _to_float(out.pair_count)
            sums[2 * n_t + 2] += _to_float(out.loss) * len(recs)
            sums[2 * n_t + 3] += len(recs)
            sums[2 * n_t + 4] += _to_float(out.align_correct or 0)
            sums[2 * n_t + 5] += _to_float(out.align_count or 0)
    if was_training:
        model.train()
    sums = accelerator.reduce(sums, reduction="sum").tolist()
    metrics: dict[str, Any] = {}
    for i, task in enumerate(PRETRAIN_TASKS):
        if sums[n_t + i] > 0:
            metrics[f"acc_{task}"] = sums[i] / sums[n_t + i]
            metrics[f"n_{task}"] = int(sums[n_t + i])
    if sums[2 * n_t + 1] > 0:
        metrics["pair_acc"] = sums[2 * n_t] / sums[2 * n_t + 1]
        metrics["n_pair"] = int(sums[2 * n_t + 1])
    if sums[2 * n_t + 5] > 0:  # in-batch retrieval of the other language's name, both directions
        metrics["align_acc"] = sums[2 * n_t + 4] / sums[2 * n_t + 5]
        metrics["n_align"] = int(sums[2 * n_t + 5]) // 2
    if sums[2 * n_t + 3] > 0:
        metrics["loss"] = sums[2 * n_t + 2] / sums[2 * n_t + 3]
    return metrics


# ---------------------------------------------------------------------------------------- train


def train(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) pretraining as configured; returns the last evaluation metrics."""
    # lazy: torch, accelerate, transformers and the modules built on them
    import torch
    from accelerate import Accelerator
    from accelerate.utils import parse_flag_from_env, set_seed
    from transformers import get_linear_schedule_with_warmup

    from ..engine import gather_objects, micro_step, reset_accelerate_state, weight_digest
    from .checkpoint import (
        check_layout,
        load_deepspeed_state,
        load_training_state,
        save_deepspeed_state,
        save_training_state,
    )

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    if not cfg.output_dir or not cfg.tokenizer:  # a config from load_pretrain_config has both
        raise KbioxlmError("config: output_dir and tokenizer are required")
    out_dir = Path(cfg.output_dir)
    check_writable_dir(out_dir, "output_dir")  # one line now, not a traceback after loading
    check_model_name(resolve_path(cfg.model) if cfg.model else None, "model")
    check_model_name(resolve_path(cfg.tokenizer), "tokenizer")
    mp = cfg.mixed_precision
    if mp == "fp16" and not torch.cuda.is_available():
        raise KbioxlmError("fp16 needs a CUDA GPU; use bf16 (supported on CPUs too) or mixed_precision=no")
    ga = int(cfg.gradient_accumulation_steps)
    # Data first: a bad record file is reported before models are loaded or processes synchronised.
    skip = SkipCounter() if cfg.skip_invalid else None
    pools = load_pretrain_records(parse_train_files(cfg.train_files), skip)
    if cfg.eval_files:
        train_pools = pools
        held = load_pretrain_records(parse_train_files(cfg.eval_files), skip)
    else:
        train_pools, held = split_eval_records(
            pools, float(cfg.eval_fraction), int(cfg.eval_max_per_task), int(cfg.seed)
        )
    if skip is not None and skip.count:
        log.warning("skipped %d invalid records, e.g. %s", skip.count, "; ".join(skip.examples))
    counts = {t: len(v) for t, v in train_pools.items()}
    mix = normalise_mix(cfg.mix, counts)
    schedule = MixedSchedule(
        train_pools, mix, int(cfg.seed), cfg.epoch_size, length_bucketing=int(cfg.length_bucketing)
    )
    reset_accelerate_state()
    # accelerate only sets up multi-process CPU training (gloo) when told it runs on CPU.
    has_accel = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    # ... except under `accelerate launch --use_deepspeed`: `cpu=True` would silently drop DeepSpeed
    # (DeepSpeed has a CPU backend: the ZeRO-2 resume test runs on it).
    ds_requested = parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")
    accelerator = Accelerator(
        cpu=bool(cfg.cpu) or (not has_accel and not ds_requested),
        gradient_accumulation_steps=ga,
        mixed_precision=mp,
        log_with=trackers(cfg) or None,
        project_dir=str(out_dir),
        step_scheduler_with_optimizer=False,
    )
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is not None and int(getattr(ds, "zero_stage", 0) or 0) == 3:
        # ZeRO-3 partitions the parameters; the final save_pretrained would write empty shards.
        raise KbioxlmError("DeepSpeed ZeRO stage 3 is not supported; use stage 1 or 2 (the encoders here fit one GPU)")
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    if ds is not None:
        # No DataLoader goes through accelerate.prepare (the schedule is ours), so DeepSpeed's
        # "auto" batch sizes have nothing to be filled from: set them from this run's config.
        dsc = ds.deepspeed_config
        if dsc.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            dsc["train_micro_batch_size_per_gpu"] = int(cfg.per_device_train_batch_size)
        if dsc.get("train_batch_size", "auto") == "auto":
            dsc["train_batch_size"] = int(cfg.per_device_train_batch_size) * ga * world
        if dsc.get("gradient_clipping", "auto") in ("auto", None):
            dsc["gradient_clipping"] = float(
                cfg.max_grad_norm or 0.0
            )  # DeepSpeed clips; accelerate's clip only reads the norm

    ckpt = find_checkpoint(out_dir, cfg.resume_from_checkpoint)
    if ckpt is None and cfg.resume_from_checkpoint not in (None, "auto"):
        raise KbioxlmError(f"{cfg.resume_from_checkpoint}: checkpoint not found")
    previous = (
        find_checkpoint(out_dir, "auto") is not None
        or (out_dir / "final").exists()
        or (out_dir / "eval.jsonl").exists()
    )
    # resume=auto without a checkpoint starts afresh (a pipeline always passes auto); no resume
    # request at all into a used folder is refused rather than silently mixing two runs' logs.
    fresh_ok = cfg.overwrite_output_dir or cfg.resume_from_checkpoint == "auto"
    if ckpt is None and previous and not fresh_ok:
        raise KbioxlmError(
            f"{out_dir}: already holds a run (checkpoints, final/ or eval.jsonl); resume with "
            "resume_from_checkpoint=auto or set overwrite_output_dir=true"
        )
    if main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KbioxlmError(f"{out_dir}: cannot create output_dir ({exc.strerror or exc})") from exc
        if ckpt is None and previous:
            for name in ("checkpoints", "final", "eval.jsonl", "train_log.jsonl"):
                p = out_dir / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    accelerator.wait_for_everyone()

    set_seed(int(cfg.seed))
    tokenizer = load_tokenizer(resolve_path(cfg.tokenizer))
    kept = kept_ids_of(cfg, len(tokenizer))

    per_device = int(cfg.per_device_train_batch_size)
    global_batch = per_device * world

    # model, optimizer, schedule
    model = build_model(cfg, tokenizer, kept)
    model.train()
    optimizer = make_optimizer(model, cfg, accelerator.device.type)
    if cfg.torch_compile:
        # In place (nn.Module.compile): names, state dicts and unwrap_model stay as they are.
        model.compile(backend="inductor" if cfg.torch_compile is True else str(cfg.torch_compile))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_steps), int(cfg.max_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    # Stepped by us once per optimizer step (accelerate's wrapper would step it once per process).
    accelerator.register_for_checkpointing(scheduler)
    collator = make_collator(cfg, tokenizer, kept, [int(cfg.seed), rank])

    global_step = 0
    position = DataPosition()
    if ckpt is not None:
        if check_layout(ckpt, _deepspeed(accelerator)) == "deepspeed":
            load_deepspeed_state(ckpt, accelerator, model, scheduler)  # the engine's own shards (docs/robustness.md)
        else:
            load_training_state(ckpt, accelerator, model, optimizer, scheduler)
        state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        global_step = int(state["global_step"])
        position = DataPosition(**state["data_position"])
        cpath = ckpt / f"collator_rank{rank}.json"
        if state.get("world_size") == world and cpath.is_file():
            collator.load_state_dict(json.loads(cpath.read_text(encoding="utf-8")))
        else:
            log.warning(
                "resuming with %d processes (checkpoint had %s): masks will differ from an uninterrupted run",
                world,
                state.get("world_size"),
            )
            collator = make_collator(cfg, tokenizer, kept, [int(cfg.seed), rank, global_step])
        if state.get("per_device_train_batch_size") != per_device or state.get("gradient_accumulation_steps") != ga:
            log.warning(
                "batch size or accumulation changed since the checkpoint; the data order continues from its position"
            )
        if main:
            _truncate_jsonl(out_dir / "eval.jsonl", global_step)
            _truncate_jsonl(out_dir / "train_log.jsonl", global_step)
        log.info("resumed from %s at step %d (epoch %d, index %d)", ckpt, global_step, position.epoch, position.index)

    # Flat: the resolved config keys at the top level (export's model card reads e.g.
    # train_files, learning_rate, max_steps), then what this run derived from them.
    run_info = {
        **asdict(cfg),
        "tasks": list(PRETRAIN_TASKS),
        "mix_normalised": mix,
        "train_records": counts,
        "eval_records": {t: len(v) for t, v in held.items()},
        "world_size": world,
        "effective_batch_size": global_batch * ga,
        "base_model": cfg.model,
        "reduced_vocab_size": len(kept) if kept else None,
    }
    if main:
        write_json(out_dir / "kbioxlm_config.json", run_info)
    if trackers(cfg):
        flat = {k: _scalar(v) for k, v in asdict(cfg).items() if v is not None and not isinstance(v, dict)}
        # "tensorboard": the run folder's tensorboard/ (docs/pretrain.md); other trackers' project name.
        accelerator.init_trackers("tensorboard" if "tensorboard" in trackers(cfg) else "kbioxlm-pretrain", config=flat)

    last_eval = [-1]

    def log_eval(step: int) -> dict[str, Any]:
        last_eval[0] = step
        metrics = evaluate(accelerator.unwrap_model(model), held, tokenizer, cfg, accelerator, kept)
        if main:
            _append_jsonl(out_dir / "eval.jsonl", {"step": step, **metrics})
            log.info(
                "eval step %d: %s",
                step,
                " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()),
            )
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
        return metrics

    def save_checkpoint(step: int) -> None:
        d = out_dir / "checkpoints" / f"checkpoint-{step}"
        if _deepspeed(accelerator):
            save_deepspeed_state(d, accelerator, model, scheduler)  # the engine's own shards (docs/robustness.md)
        else:  # safetensors + JSON only: nothing a resume reads can run code
            save_training_state(d, accelerator, model, optimizer, scheduler)
        # The masking RNG as it was after the last batch *used* (a data worker runs ahead).
        write_json(d / f"collator_rank{rank}.json", collator_state)
        accelerator.wait_for_everyone()
        if main:
            # Written last: its presence marks the checkpoint complete for resume=auto.
            write_json(
                d / "trainer_state.json",
                {
                    "global_step": step,
                    "data_position": position.to_dict(),
                    "world_size": world,
                    "per_device_train_batch_size": per_device,
                    "gradient_accumulation_steps": ga,
                    "seed": cfg.seed,
                },
            )
            done = sorted(
                (c for c in d.parent.glob("checkpoint-*") if (c / "trainer_state.json").is_file()),
                key=lambda c: int(c.name.split("-")[-1]),
            )
            limit = int(cfg.save_total_limit or 0)
            for old in done[:-limit] if limit > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    max_steps = int(cfg.max_steps)
    stop_at = min(max_steps, int(cfg.stop_at_step)) if cfg.stop_at_step else max_steps
    metrics: dict[str, Any] = {}
    if global_step == 0 and cfg.eval_at_start and max_steps > 0:
        metrics = log_eval(0)
    collator_state = collator.state_dict()
    batches = _batch_stream(cfg, schedule, collator, position, global_batch, rank, per_device, accelerator.device)
    bar = progress(
        total=max_steps,
        initial=global_step,
        desc="pretrain",
        unit="step",
        enabled=accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    window: dict[str, list[torch.Tensor]] = {}  # per-step losses, still on the device
    t0, n_examples = time.perf_counter(), 0
    while global_step < stop_at:
        grad_norm = None
        for _ in range(ga):
            host_batch, next_pos, collator_state, n_recs = next(batches)
            out, norm = micro_step(accelerator, model, optimizer, host_batch, cfg.max_grad_norm)
            grad_norm = norm if norm is not None else grad_norm
            position = DataPosition(**next_pos)
            n_examples += n_recs
            # Kept on the device until logging: a .item() here would make the host wait for
            # every step's backward instead of preparing the next one.
            window.setdefault("loss", []).append(out.loss.detach())
            for task, v in (out.losses or {}).items():
                window.setdefault(f"loss_{task}", []).append(v)
        if not accelerator.optimizer_step_was_skipped:
            scheduler.step()
        global_step += 1
        bar.update(1)
        if cfg.logging_steps and (global_step % int(cfg.logging_steps) == 0 or global_step == max_steps):
            rec: dict[str, Any] = {
                k: float(torch.stack([t.double() for t in v]).mean()) for k, v in window.items() if v
            }
            rec["lr"] = scheduler.get_last_lr()[0]
            if grad_norm is not None:
                rec["grad_norm"] = _to_float(grad_norm)
            rec["examples_per_s"] = n_examples / max(1e-9, time.perf_counter() - t0)
            rec = {k: (v if math.isfinite(v) else None) for k, v in rec.items()}
            if main:
                _append_jsonl(out_dir / "train_log.jsonl", {"step": global_step, **rec})
            accelerator.log({f"train/{k}": v for k, v in rec.items() if v is not None}, step=global_step)
            bar.set_postfix(loss=f"{rec.get('loss') or float('nan'):.3f}", lr=f"{rec['lr']:.2e}")
            window, t0, n_examples = {}, time.perf_counter(), 0
        if cfg.eval_steps and global_step % int(cfg.eval_steps) == 0:
            metrics = log_eval(global_step)
        if (cfg.save_steps and global_step % int(cfg.save_steps) == 0) or (global_step == stop_at < max_steps):
            save_checkpoint(global_step)
    bar.close()
    if global_step < max_steps:
        log.info(
            "stopped at step %d of %d (stop_at_step); continue with resume_from_checkpoint=auto", global_step, max_steps
        )
        accelerator.end_training()
        return metrics
    if max_steps > 0 and last_eval[0] != global_step:
        metrics = log_eval(global_step)

    # final model: written beside, then renamed, so a crash never leaves a half-written final/
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    # One digest per process: equal digests prove the replicas stayed in sync (DDP sanity check).
    digests = gather_objects(accelerator, weight_digest(unwrapped))
    if main:
        final = out_dir / "final"
        tmp = out_dir / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        run_info.update({"global_step": global_step, "final_eval": metrics, "rank_weight_digests": digests})
        write_json(out_dir / "kbioxlm_config.json", run_info)
        log.info("final model saved to %s", final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics
