"""``kbioxlm finetune`` (and ``kbioxlm benchmark`` when the benchmark module is present)."""

from __future__ import annotations

import argparse
import logging
import os

from ..cliutil import add_print_config, hide_aliases
from ..errors import KbioxlmError


def _extra(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path or not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {value!r}")
    return name, path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune an encoder on NER/RE/DC, select on dev, score test",
                       description="Fine-tune and evaluate; writes OUT/results.json and OUT/predictions.jsonl.")
    p.add_argument("--task", required=True, choices=["ner", "re", "dc"],
                   help="ner: entity tagging (CRF head); re: relation classification; dc: multi-label document classes")
    p.add_argument("--model", required=True, help="HF model name or folder")
    p.add_argument("--tokenizer", help="tokenizer name or folder (default: the model's)")
    p.add_argument("--train", required=True, help="training set (release CoNLL / NER JSONL, or JSON lines for re/dc)")
    p.add_argument("--dev", help="dev set for checkpoint selection (source language for zero-shot)")
    p.add_argument("--test", required=True, help="test set, scored with the model selected on --dev")
    p.add_argument("--extra-test", action="append", type=_extra, default=[], metavar="NAME=FILE",
                   help="further test sets scored with the selected model (repeatable)")
    p.add_argument("--out", required=True, help="output folder (results.json, predictions.jsonl)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs at most (see --early-stopping-patience)")
    hide_aliases(p.add_argument("--learning-rate", "--lr", dest="lr", type=float, default=5e-5,
                                help="learning rate of the encoder (config key learning_rate)"), "--lr")
    hide_aliases(p.add_argument("--head-learning-rate", "--head-lr", dest="head_lr", type=float, default=None,
                                help="learning rate of parameters the checkpoint lacks (task head, missing pooler); "
                                "default: --learning-rate"), "--head-lr")
    p.add_argument("--classifier-dropout", type=float, default=None,
                   help="RE/DC: dropout before the classifier (default: the checkpoint's)")
    p.add_argument("--head", choices=["model", "normalized"], default="model",
                   help="RE/DC head: the architecture's own (default) or mean pooling + standardisation")
    p.add_argument("--adapt-norm", action="store_true",
                   help="normalized head: standardise each evaluated set with its own inputs' statistics (AdaBN)")
    p.add_argument("--batch-size", type=int, default=16, help="training examples per step")
    p.add_argument("--max-length", type=int, default=256, help="pieces per example (longer inputs are cut)")
    p.add_argument("--seed", type=int, default=42, help="seed of initialisation, shuffling and dropout")
    p.add_argument("--max-train-examples", type=int, help="use only the first N training examples (default: all)")
    hide_aliases(p.add_argument("--early-stopping-patience", "--patience", dest="patience", type=int, default=2,
                                help="stop after this many epochs without a better dev score (0 = off)"), "--patience")
    hide_aliases(p.add_argument("--num-threads", "--threads", dest="threads", type=int,
                                help="torch CPU threads (default: all cores)"), "--threads")
    p.add_argument("--save-model", action="store_true", help="also save the selected model to OUT/model")
    p.add_argument("--allow-unseen-types", action="store_true",
                   help="NER: score entity types of dev/test sets that never occur in training (default: an error)")
    hide_aliases(p.add_argument("--lang", "--train-lang", dest="train_lang",
                                help="language of --train and --dev (default: detected)"), "--train-lang")
    hide_aliases(p.add_argument("--target-lang", "--test-lang", dest="test_lang",
                                help="language of --test (default: detected)"), "--test-lang")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                   help="bf16: autocast in training and evaluation (CPUs, bf16 GPUs); several processes: "
                   "run under `accelerate launch` or `torchrun` (docs/evaluation.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-test-each-epoch", action="store_true",
                   help="also score the test sets after every epoch (logged only; selection uses dev)")
    add_print_config(p)
    p.set_defaults(func=_finetune)
    try:
        from .benchmark import register_benchmark
    except ModuleNotFoundError as exc:
        if exc.name != "kbioxlm.tasks.benchmark":
            raise
    else:
        register_benchmark(sub)


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, run_finetune

    if args.max_train_examples is not None and args.max_train_examples < 1:
        raise KbioxlmError("--max-train-examples must be >= 1")
    cfg = FinetuneConfig(
        task=args.task, model=args.model, tokenizer=args.tokenizer, train=args.train, dev=args.dev,
        test=args.test, out=args.out, epochs=args.epochs, lr=args.lr, head_lr=args.head_lr,
        classifier_dropout=args.classifier_dropout, head=args.head, adapt_norm=args.adapt_norm, batch_size=args.batch_size,
        max_length=args.max_length, seed=args.seed, max_train_examples=args.max_train_examples,
        early_stopping_patience=args.patience or None, num_threads=args.threads, save_model=args.save_model,
        train_lang=args.train_lang, dev_lang=args.train_lang, test_lang=args.test_lang,
        extra_tests=dict(args.extra_test), progress=not args.no_progress,
        log_test_each_epoch=args.log_test_each_epoch, allow_unseen_types=args.allow_unseen_types,
        mixed_precision=args.mixed_precision,
    )
    if args.print_config:
        from dataclasses import asdict

        from ..cliutil import print_config

        return print_config(asdict(cfg))
    res = run_finetune(cfg)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch / torchrun the main process reports
        return 0
    extra = "".join(f" {k}_f1={v['f1']:.2f}" for k, v in res.get("extra_tests", {}).items())
    logging.getLogger("kbioxlm.finetune").debug("results: %s", res)
    print(f"{res['task']}: f1={res['f1']:.2f} p={res['precision']:.2f} r={res['recall']:.2f} "
          f"n_test={res['n_test']} best_epoch={res['best_epoch']} dev_f1={res['dev_f1'] if res['dev_f1'] is None else round(res['dev_f1'], 2)}"
          f"{extra} -> {args.out}/results.json")
    return 0
