"""``kbioxlm vocab reduce|trim`` and ``kbioxlm export`` (and ``pretrain`` via :mod:`.train_cli`).

Heavy imports (torch, transformers) happen inside the handlers so ``kbioxlm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from ..errors import KbioxlmError
from ..hub import check_model_name, is_hub_id, load_error

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    vocab = sub.add_parser("vocab", help="reduced output vocabulary / vocabulary trimming")
    vsub = vocab.add_subparsers(dest="vocab_command", metavar="ACTION")
    vsub.required = True

    p = vsub.add_parser("reduce", help="count token ids over JSONL corpora and write the kept-id list")
    p.add_argument("--tokenizer", required=True, help="tokenizer name or folder (e.g. xlm-roberta-base)")
    p.add_argument("--corpus", required=True, nargs="+", help="JSONL files (Document/Entity/Fact: text; Passage: text_a/text_b)")
    p.add_argument("--out", required=True, help="output JSON {tokenizer, kept_ids, counts}")
    p.add_argument("--min-count", type=int, default=1, help="keep ids seen at least this often (default 1)")
    p.add_argument("--max-size", type=int, default=None, help="keep at most this many ids (most frequent)")
    p.add_argument("--min-size", type=int, default=None, help="pad to this many ids with the tokenizer's most probable unseen pieces (paper: 37030)")
    p.set_defaults(func=_vocab_reduce)

    p = vsub.add_parser("trim", help="cut input embeddings, LM head and tokenizer to the kept pieces (exact for covered scripts)")
    p.add_argument("--model", required=True, help="model folder or name")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder holding tokenizer.json (SentencePiece-Unigram)")
    p.add_argument("--kept", required=True, help="kept-id JSON written by 'vocab reduce'")
    p.add_argument("--out", required=True, help="output folder (model, tokenizer, vocab_map.json); must be new or empty")
    p.add_argument("--overwrite", action="store_true", help="replace a previous 'vocab trim' output in --out (never other files)")
    p.add_argument(
        "--charsets",
        default="latin1,greek,cjk,symbols",
        help="character ranges whose pieces are always kept so any such text tokenizes exactly as before "
        "(comma-separated from latin1,greek,cjk,symbols; 'none' = only the kept pieces' own characters)",
    )
    p.set_defaults(func=_vocab_trim)

    p = sub.add_parser("export", help="write a plain Hugging Face checkpoint (full vocabulary restored, model card)")
    p.add_argument("--checkpoint", required=True, help="training checkpoint folder (kbioxlm_model.json + model.safetensors)")
    p.add_argument("--out", required=True, help="output folder; must be new or empty")
    p.add_argument("--overwrite", action="store_true", help="replace a previous export in --out (never other files)")
    p.add_argument(
        "--full-vocab-from",
        default=None,
        help="original model (or tokenizer) to restore rows outside the kept ids from, and to undo a 'vocab trim'",
    )
    p.add_argument("--tokenizer", default=None, help="tokenizer folder to ship (default: found in the checkpoint / base model)")
    p.add_argument("--probe", default=None, help="probe.json of this model ('kbioxlm probe'): its table goes into the model card")
    p.add_argument("--benchmark", default=None,
                   help="results.jsonl of a 'kbioxlm benchmark' run: its F1 table goes into the model card")
    p.add_argument("--base-model", default=None,
                   help="hub id for the card's base_model (default: the base recorded at training; the hub refuses a local path)")
    p.add_argument("--dataset", action="append", default=[], metavar="HUB_ID",
                   help="hub dataset id for the card's datasets metadata (repeatable)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID",
                   help="after exporting, upload the folder to this Hugging Face hub model repository (created if needed)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.set_defaults(func=_export)

    try:
        from .train_cli import register_pretrain
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.train_cli":  # a real missing dependency inside train_cli: surface it
            raise
    else:
        register_pretrain(sub)


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

    charsets = [] if args.charsets.strip() in ("", "none") else [c.strip() for c in args.charsets.split(",") if c.strip()]
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
    summary = export_checkpoint(args.checkpoint, args.out, full_vocab_from=args.full_vocab_from, tokenizer=args.tokenizer,
                                overwrite=args.overwrite, probe=args.probe, benchmark=args.benchmark,
                                base_model=args.base_model, datasets=args.dataset)
    print(f"exported {summary['architecture']} ({summary['vocab_size']} ids) -> {args.out}")
    if args.push_to_hub:
        from ..modelcard import push_folder

        url = push_folder(args.out, args.push_to_hub, private=args.private)
        print(f"pushed {args.out} -> {url}")
    return 0
