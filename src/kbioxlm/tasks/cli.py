"""``kbioxlm finetune`` and ``kbioxlm benchmark``."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import asdict
from pathlib import Path

from ..cliutil import add_dataclass_options, add_print_config, dataclass_kwargs, print_config
from ..errors import KbioxlmError
from ..io import dumps
from .finetune import FinetuneConfig, run_finetune


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune an encoder on NER/RE/DC, select on dev, score test",
        description="Fine-tune and evaluate; writes OUT/results.json and OUT/predictions.jsonl.",
    )
    add_dataclass_options(p, FinetuneConfig)  # the flags are declared once, on FinetuneConfig's fields
    add_print_config(p)
    p.set_defaults(func=_finetune)

    p = sub.add_parser(
        "benchmark",
        help="run the models × tasks × directions × settings × seeds matrix (resumable)",
        description="Fine-tune and test every cell of a benchmark matrix; re-running skips finished cells. "
        "Writes OUT/results.jsonl, OUT/results.md (tables like the paper's Tables 4-7) and OUT/results.png. "
        "See docs/benchmark.md for the config format.",
    )
    p.add_argument("--config", required=True, help="benchmark YAML config")
    p.add_argument("--out", required=True, help="output folder (re-use it to resume)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the cells with their files and sizes, train nothing")
    mode.add_argument(
        "--report-only", action="store_true", help="only rewrite results.md/results.png from results.jsonl"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_print_config(p)
    p.set_defaults(func=_benchmark)


def _finetune(args: argparse.Namespace) -> int:
    if args.max_train_examples is not None and args.max_train_examples < 1:
        raise KbioxlmError("--max-train-examples must be >= 1")
    cfg = FinetuneConfig(**dataclass_kwargs(FinetuneConfig, args))
    if args.print_config:
        return print_config(asdict(cfg))
    res = run_finetune(cfg)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch / torchrun the main process reports
        return 0
    extra = "".join(f" {k}_f1={v['f1']:.2f}" for k, v in res.get("extra_tests", {}).items())
    logging.getLogger("kbioxlm.finetune").debug("results: %s", res)
    print(
        f"{res['task']}: f1={res['f1']:.2f} p={res['precision']:.2f} r={res['recall']:.2f} "
        f"n_test={res['n_test']} best_epoch={res['best_epoch']} dev_f1={res['dev_f1'] if res['dev_f1'] is None else round(res['dev_f1'], 2)}"
        f"{extra} -> {args.out}/results.json"
    )
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import RESULTS, dry_run, effective_config, load_benchmark_config, read_results, run_benchmark
    from .report import write_report

    cfg = load_benchmark_config(args.config)
    out = Path(args.out)
    if args.print_config:
        return print_config(effective_config(cfg))
    if args.dry_run:
        for row in dry_run(cfg):
            print(dumps(row))
        return 0
    if args.report_only:
        recs = read_results(out / RESULTS)
        if not recs:
            raise KbioxlmError(f"{out / RESULTS}: no finished cells to report")
        md, png = write_report(out, recs, cfg=cfg)
        print(f"benchmark: wrote {md} and {png} from {len(recs)} cells")
        return 0
    counts = run_benchmark(cfg, out, progress=not args.no_progress)
    print(
        f"benchmark: {counts['cells']} cells: {counts['ran']} run, {counts['skipped']} skipped "
        f"(already in {out / RESULTS}), {counts['recovered']} recovered; tables in {out / 'results.md'}"
    )
    return 0
