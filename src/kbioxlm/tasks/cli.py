"""``kbioxlm finetune`` (and ``kbioxlm benchmark`` when the benchmark module is present)."""

from __future__ import annotations

import argparse
import logging
import os

from ..cliutil import add_dataclass_options, add_print_config, dataclass_kwargs
from ..errors import KbioxlmError
from .finetune import FinetuneConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune an encoder on NER/RE/DC, select on dev, score test",
                       description="Fine-tune and evaluate; writes OUT/results.json and OUT/predictions.jsonl.")
    add_dataclass_options(p, FinetuneConfig)  # the flags are declared once, on FinetuneConfig's fields
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
    from .finetune import run_finetune

    if args.max_train_examples is not None and args.max_train_examples < 1:
        raise KbioxlmError("--max-train-examples must be >= 1")
    cfg = FinetuneConfig(**dataclass_kwargs(FinetuneConfig, args))
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
