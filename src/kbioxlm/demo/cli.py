"""Registers ``kbioxlm demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="plain MLM vs knowledge anchoring from the same start and budget, on shipped synthetic data",
        description=(
            "From one initialisation and the same budget, pretrain two arms on the project's synthetic "
            "bilingual data: plain whole-word MLM on the monolingual texts, and knowledge anchoring (MLM + "
            "entity + fact + passage levels) on the same texts. Measure both and the untouched initialisation "
            "on term retrieval EN→ZH / ZH→EN over concepts held out of pretraining and on zero-shot EN→ZH NER, "
            "over several seeds. The demo is a pipeline config (resources/demo/pipeline.yaml, written with these "
            "settings to WORKDIR/pipeline.yaml) run once per seed into WORKDIR/seed-S; running it again skips "
            "what finished. Writes WORKDIR/results.json, results.png, results.md and demo.log."
        ),
    )
    p.add_argument("--workdir", default="runs/demo", help="where every intermediate file goes (default: runs/demo)")
    p.add_argument(
        "--model",
        default=None,
        help="encoder to start from (folder or hub id, e.g. ../shared/models/multilingual-e5-small-zhen or "
        "xlm-roberta-base); default: a tiny random encoder",
    )
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer (default: the model's, or one built from the demo text)"
    )
    p.add_argument(
        "--seeds", type=int, default=3, help="full repeats (initialisation, pretraining, probe, NER); default 3"
    )
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=None,
        help="pretraining steps per arm and seed (default 400; 100 with --model)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="pretraining batch size of both arms (default 16)")
    p.add_argument("--epochs", type=int, default=None, help="NER fine-tuning epochs (default 10; 3 with --model)")
    p.add_argument("--seed", type=int, default=13, help="first seed; the others follow it (default 13)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="seeds run side by side (default: one per seed, at most 4; 1 with --model)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .experiment import DemoSettings, run_demo

    run_demo(
        DemoSettings(
            workdir=args.workdir,
            model=args.model,
            tokenizer=args.tokenizer,
            pretrain_steps=args.pretrain_steps,
            epochs=args.epochs,
            seed=args.seed,
            seeds=args.seeds,
            batch_size=args.batch_size,
            workers=args.workers,
        )
    )
    return 0
