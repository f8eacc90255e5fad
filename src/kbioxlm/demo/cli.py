"""Registers ``kbioxlm demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run KB import → corpora → pretraining → zero-shot fine-tuning on shipped data",
        description=(
            "Run the whole KBioXLM pipeline on the small bilingual resources the project ships: "
            "import a KB, build the entity/fact/passage corpora, continue pretraining a model, "
            "fine-tune it and the untouched base model on English NER and test zero-shot on Chinese."
        ),
    )
    p.add_argument("--workdir", default="runs/demo", help="where every intermediate file goes (default: runs/demo)")
    p.add_argument(
        "--model",
        default=None,
        help="encoder to start from (hub id or path, e.g. xlm-roberta-base); default: a tiny random model",
    )
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the model's, or one trained on the demo text)")
    p.add_argument("--pretrain-steps", type=int, default=None, help="continued-pretraining steps")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    p.add_argument("--seed", type=int, default=13)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .pipeline import DemoSettings, run_demo

    run_demo(
        DemoSettings(
            workdir=args.workdir,
            model=args.model,
            tokenizer=args.tokenizer,
            pretrain_steps=args.pretrain_steps,
            epochs=args.epochs,
            seed=args.seed,
        )
    )
    return 0
