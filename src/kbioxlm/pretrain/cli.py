"""``kbioxlm vocab reduce|trim``, ``kbioxlm pretrain --config F [key=value ...]`` and ``kbioxlm export``
(docs/design.md, "CLI contract").

``pretrain`` runs the same on one process or many: ``torchrun --nproc_per_node N -m kbioxlm pretrain
...`` or ``accelerate launch [--use_deepspeed ...] -m kbioxlm pretrain ...``; accelerate reads the
launcher's environment. Heavy imports (torch, transformers) happen inside the handlers so
``kbioxlm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict
from typing import Any

from .. import paths
from ..cliutil import add_print_config, print_config
from ..errors import KbioxlmError
from ..hub import check_model_name, is_hub_id, load_error

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    vocab = sub.add_parser("vocab", help="reduced output vocabulary / vocabulary trimming")
    vsub = vocab.add_subparsers(dest="vocab_command", metavar="ACTION")
    vsub.required = True

    p = vsub.add_parser("reduce", help="count token ids over JSONL corpora and write the kept-id list")
    p.add_argument("--tokenizer", required=True, help="tokenizer name or folder (e.g. xlm-roberta-base)")
    p.add_argument(
        "--corpus", required=True, nargs="+", help="JSONL files (Document/Entity/Fact: text; Passage: text_a/text_b)"
    )
    p.add_argument("--out", required=True, help="output JSON {tokenizer, kept_ids, counts}")
    p.add_argument("--min-count", type=int, default=1, help="keep ids seen at least this often (default 1)")
    p.add_argument("--max-size", type=int, default=None, help="keep at most this many ids (most frequent)")
    p.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="pad to this many ids with the tokenizer's most probable unseen pieces (paper: 37030)",
    )
    p.set_defaults(func=_vocab_reduce)

    p = vsub.add_parser(
        "trim", help="cut input embeddings, LM head and tokenizer to the kept pieces (exact for covered scripts)"
    )
    p.add_argument("--model", required=True, help="model folder or name")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder holding tokenizer.json (SentencePiece-Unigram)")
    p.add_argument("--kept", required=True, help="kept-id JSON written by 'vocab reduce'")
    p.add_argument(
        "--out", required=True, help="output folder (model, tokenizer, vocab_map.json); must be new or empty"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a previous 'vocab trim' output in --out (never other files)"
    )
    p.add_argument(
        "--charsets",
        default="latin1,greek,cjk,symbols",
        help="character ranges whose pieces are always kept so any such text tokenizes exactly as before "
        "(comma-separated from latin1,greek,cjk,symbols; 'none' = only the kept pieces' own characters)",
    )
    p.set_defaults(func=_vocab_trim)

    p = sub.add_parser("export", help="write a plain Hugging Face checkpoint (full vocabulary restored, model card)")
    p.add_argument(
        "--checkpoint", required=True, help="training checkpoint folder (kbioxlm_model.json + model.safetensors)"
    )
    p.add_argument("--out", required=True, help="output folder; must be new or empty")
    p.add_argument("--overwrite", action="store_true", help="replace a previous export in --out (never other files)")
    p.add_argument(
        "--full-vocab-from",
        default=None,
        help="original model (or tokenizer) to restore rows outside the kept ids from, and to undo a 'vocab trim'",
    )
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer folder to ship (default: found in the checkpoint / base model)"
    )
    p.add_argument(
        "--probe", default=None, help="probe.json of this model ('kbioxlm probe'): its table goes into the model card"
    )
    p.add_argument(
        "--benchmark",
        default=None,
        help="results.jsonl of a 'kbioxlm benchmark' run: its F1 table goes into the model card",
    )
    p.add_argument(
        "--base-model",
        default=None,
        help="hub id for the card's base_model (default: the base recorded at training; the hub refuses a local path)",
    )
    p.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="HUB_ID",
        help="hub dataset id for the card's datasets metadata (repeatable)",
    )
    p.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO_ID",
        help="after exporting, upload the folder to this Hugging Face hub model repository (created if needed)",
    )
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.set_defaults(func=_export)

    _register_pretrain(sub)


def _register_pretrain(sub: Any) -> None:
    """Add the ``pretrain`` sub-command to the ``kbioxlm`` sub-parsers."""
    p = sub.add_parser(
        "pretrain",
        help="continued pretraining with knowledge-anchored objectives (YAML config + key=value overrides)",
        description=(
            "Continued pretraining (masked entity / relation / whole-word prediction and passage-pair "
            "classification). Reads a YAML config; key=value overrides any key (values parsed as YAML, "
            "dotted keys reach into mappings, e.g. mix.mlm=0.5 loss_weights.passage=1). "
            "Multi-process: torchrun --nproc_per_node N -m kbioxlm pretrain ... or accelerate launch -m kbioxlm pretrain ..."
        ),
    )
    p.add_argument(
        "--config",
        required=True,
        help="YAML config, e.g. configs/pretrain-tiny.yaml; relative paths inside it are taken from its folder",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder: the same as output_dir=DIR (the name every other command uses)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any config key (listed below); paths here are taken from the current directory",
    )
    add_print_config(p)
    original = p.format_help

    def format_help() -> str:  # the key list needs the trainer module: built only when help is shown
        p.epilog = config_keys_help()
        return original()

    p.format_help = format_help
    p.set_defaults(func=_pretrain, trailing_overrides=True)


def config_keys_help() -> str:
    """Every pretraining config key with its default (the fields of ``kbioxlm.pretrain.trainer.PretrainConfig``), for ``--help``."""
    from .trainer import ALIASES, DEFAULTS

    width = max(map(len, DEFAULTS))
    lines = [
        "config keys (default) — set them in the YAML or as key=value; aliases: "
        + ", ".join(f"{a}={k}" for a, k in ALIASES.items())
        + ", --out=output_dir:"
    ]
    lines += [f"  {k:<{width}}  {json.dumps(v)}" for k, v in DEFAULTS.items()]
    return "\n".join(lines)


def _pretrain(args: argparse.Namespace) -> int:
    from .trainer import PretrainConfig, load_pretrain_settings, train

    overrides = [*args.overrides, *([f"output_dir={args.out}"] if args.out is not None else [])]
    cfg, settings = load_pretrain_settings(args.config, overrides)
    # Paths from the file are taken from the file's folder, typed ones from the current directory.
    cfg = PretrainConfig(
        **paths.resolve_pretrain_paths(asdict(cfg), paths.config_dir(args.config), keys=settings.from_file)
    )
    if "tokenizer" not in settings.from_file | settings.overridden:  # load_pretrain_config copied `model` into it
        cfg.tokenizer = cfg.model
    if args.print_config:
        return print_config(asdict(cfg))
    train(cfg)
    return 0


def _vocab_reduce(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from .vocab import count_token_frequencies, select_kept_ids, write_kept_ids

    if args.min_count < 1:
        raise KbioxlmError("--min-count must be at least 1")
    for path in args.corpus:  # fail before the (slow) tokenizer load
        if not os.path.isfile(path):
            raise KbioxlmError(f"{path}: no such file")
    check_model_name(args.tokenizer, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    except (OSError, ValueError) as exc:
        raise load_error(args.tokenizer, exc, "tokenizer") from exc
    counts = count_token_frequencies(tok, args.corpus)
    kept = select_kept_ids(counts, tok, min_count=args.min_count, max_size=args.max_size, min_size=args.min_size)
    write_kept_ids(args.out, args.tokenizer, kept, counts, len(tok), files=args.corpus, min_count=args.min_count)
    total = sum(counts.values())
    print(f"kept {len(kept)} of {len(tok)} ids ({len(counts)} seen, {total} tokens) -> {args.out}")
    return 0


def _vocab_trim(args: argparse.Namespace) -> int:
    from .vocab import load_kept_ids, trim_checkpoint

    charsets = (
        [] if args.charsets.strip() in ("", "none") else [c.strip() for c in args.charsets.split(",") if c.strip()]
    )
    check_model_name(args.model, "model")
    kept = load_kept_ids(args.kept)
    summary = trim_checkpoint(args.model, args.tokenizer, kept, args.out, charsets=charsets, overwrite=args.overwrite)
    print(f"trimmed {summary['original_vocab_size']} -> {summary['trimmed_vocab_size']} ids -> {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    check_model_name(args.full_vocab_from, "model or tokenizer")
    check_model_name(args.tokenizer, "tokenizer")
    if args.push_to_hub and not is_hub_id(args.push_to_hub):  # before the export, not after it
        raise KbioxlmError(f"--push-to-hub {args.push_to_hub}: not a hub repository id (expected name or owner/name)")
    if args.base_model and not is_hub_id(args.base_model):
        raise KbioxlmError(f"--base-model {args.base_model}: not a hub model id")
    summary = export_checkpoint(
        args.checkpoint,
        args.out,
        full_vocab_from=args.full_vocab_from,
        tokenizer=args.tokenizer,
        overwrite=args.overwrite,
        probe=args.probe,
        benchmark=args.benchmark,
        base_model=args.base_model,
        datasets=args.dataset,
    )
    print(f"exported {summary['architecture']} ({summary['vocab_size']} ids) -> {args.out}")
    if args.push_to_hub:
        from ..modelcard import push_folder

        url = push_folder(args.out, args.push_to_hub, private=args.private)
        print(f"pushed {args.out} -> {url}")
    return 0
