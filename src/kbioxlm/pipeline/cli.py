"""Registers ``kbioxlm pipeline --config F [--out D] [--only STEP,...] [--force STEP,...] [--dry-run]``."""

from __future__ import annotations

import argparse
import dataclasses
import shlex

from ..cliutil import add_print_config, print_config


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
    p.add_argument("--only", action="append", metavar="STEP,...", help="run only these steps (names or prefixes)")
    p.add_argument("--force", action="append", metavar="STEP,...", help="redo these steps even if finished")
    p.add_argument("--dry-run", action="store_true", help="print the steps and their commands, run nothing")
    p.add_argument("--list", action="store_true", help="list the step names and exit")
    add_print_config(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .config import load_pipeline_config
    from .plan import build_plan
    from .runner import Runner, check_force, select_steps

    cfg = load_pipeline_config(args.config, out=args.out, shared=args.shared)
    if args.print_config:
        return print_config({k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("path", "anchor")})
    steps = build_plan(cfg)
    if args.list:
        for s in steps:
            print(f"{s.name:32s} {s.title}")
        return 0
    force = _names(args.force)
    check_force(steps, force)
    selected = select_steps(steps, _names(args.only))
    cmd = ["kbioxlm", "pipeline", "--config", args.config]
    if args.out is not None:
        cmd += ["--out", args.out]
    if args.shared is not None:
        cmd += ["--shared", args.shared]
    runner = Runner(steps, cfg.out, shlex.join(cmd), dry_run=args.dry_run, force=force, anchor=cfg.anchor)
    print(
        f"pipeline {cfg.name}: {len(selected)} of {len(steps)} steps, output in {cfg.out}"
        f"{' (dry run: nothing is executed)' if args.dry_run else ''}",
        flush=True,
    )
    outcomes = runner.run(selected)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    secs = sum(o.seconds for o in outcomes)
    print(
        "\npipeline: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ("" if args.dry_run else f" in {secs:.0f} s; step timings in {cfg.out / 'timings.json'}"),
        flush=True,
    )
    return 0
