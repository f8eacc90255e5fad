"""Registers ``kbioxlm pipeline --config F [--out D] [--only STEP,...] [--force STEP,...] [--dry-run]``."""

from __future__ import annotations

import argparse
import dataclasses

from ..cliutil import add_print_config, print_config
from ..errors import KbioxlmError


def _names(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run KB → corpora → pretraining → export → probe/benchmark from one YAML config (resumable)",
        description=(
            "Run the stage commands a pipeline config describes, printing each one. Finished steps are "
            "skipped on re-run; a step whose settings or inputs changed is redone, an interrupted one "
            "resumed. Step names: kb.*, docs.*, corpus.*, vocab, pretrain.<stage>, export.<stage>, "
            "probe.*, benchmark.*; --only/--force take names or prefixes (e.g. kb,corpus). See docs/quickstart.md."
        ),
    )
    p.add_argument(
        "--config",
        required=True,
        help="pipeline YAML, e.g. configs/e2e-small-cpu.yaml; relative paths inside it are taken from its folder",
    )
    p.add_argument("--out", default=None, help="output folder (default: the config's `out`)")
    p.add_argument(
        "--shared",
        default=None,
        help="value of ${shared} (default: $KBIOXLM_SHARED, else ../shared beside the project holding the config)",
    )
    seed = p.add_mutually_exclusive_group()
    seed.add_argument(
        "--seed",
        type=int,
        default=None,
        help="replaces the config's seed (${seed} too): one repeat of the whole pipeline, best into its own --out",
    )
    seed.add_argument(
        "--seeds",
        metavar="S,...",
        default=None,
        help="one whole run per seed, each into OUT/seed-S (with --out) or the config's out (which must name "
        "${seed}); the runs' output goes to each one's pipeline.log, a line per finished step to the terminal",
    )
    p.add_argument("--jobs", type=int, default=1, help="with --seeds: how many runs at a time (default 1)")
    p.add_argument("--only", action="append", metavar="STEP,...", help="run only these steps (names or prefixes)")
    p.add_argument("--force", action="append", metavar="STEP,...", help="redo these steps even if finished")
    p.add_argument("--dry-run", action="store_true", help="print the steps and their commands, run nothing")
    p.add_argument("--list", action="store_true", help="list the step names and exit")
    add_print_config(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .config import load_pipeline_config
    from .plan import build_plan
    from .runner import run_pipeline

    if args.print_config or args.list:
        cfg = load_pipeline_config(args.config, out=args.out, shared=args.shared, seed=args.seed)
        if args.print_config:
            return print_config({k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("path", "anchor")})
        for s in build_plan(cfg):
            print(f"{s.name:32s} {s.title}")
        return 0
    if args.jobs != 1 and args.seeds is None:
        raise KbioxlmError("--jobs runs several seeds at a time: give --seeds S,...")
    if args.seeds is not None:
        from .repeats import run_repeats

        try:
            seeds = [int(x) for x in _names([args.seeds])]
        except ValueError:
            raise KbioxlmError(f"--seeds: expected integers such as 13,14,15, got {args.seeds!r}") from None
        if args.dry_run or args.jobs < 1:
            raise KbioxlmError("--seeds runs the pipeline: without --dry-run, with --jobs 1 or more")
        run_repeats(args.config, seeds, out=args.out, shared=args.shared, jobs=args.jobs,
                    only=_names(args.only), force=_names(args.force))  # fmt: skip
        return 0
    run_pipeline(
        args.config,
        out=args.out,
        shared=args.shared,
        seed=args.seed,
        only=_names(args.only),
        force=_names(args.force),
        dry_run=args.dry_run,
    )
    return 0
