"""``kbioxlm pretrain --config F [key=value ...]`` (docs/design.md, "CLI contract").

Registered by :mod:`kbioxlm.pretrain.cli` through :func:`register_pretrain`. The same command runs
on one process or many: ``torchrun --nproc_per_node N -m kbioxlm pretrain ...`` or
``accelerate launch [--use_deepspeed ...] -m kbioxlm pretrain ...``; accelerate reads the
launcher's environment. torch and transformers are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..cliutil import add_print_config


def register_pretrain(sub: Any) -> None:
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
    p.add_argument("--config", required=True,
                   help="YAML config, e.g. configs/pretrain-tiny.yaml; relative paths inside it are taken from its folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder: the same as output_dir=DIR (the name every other command uses)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override any config key (listed below); paths here are taken from the current directory")
    add_print_config(p)
    original = p.format_help

    def format_help() -> str:  # the key list needs the trainer module: built only when help is shown
        p.epilog = config_keys_help()
        return original()

    p.format_help = format_help
    p.set_defaults(func=_run, trailing_overrides=True)


def config_keys_help() -> str:
    """Every pretraining config key with its default (the fields of ``kbioxlm.pretrain.trainer.PretrainConfig``), for ``--help``."""
    import json

    from .trainer import ALIASES, DEFAULTS

    width = max(map(len, DEFAULTS))
    lines = ["config keys (default) — set them in the YAML or as key=value; aliases: "
             + ", ".join(f"{a}={k}" for a, k in ALIASES.items()) + ", --out=output_dir:"]
    lines += [f"  {k:<{width}}  {json.dumps(v)}" for k, v in DEFAULTS.items()]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .. import paths
    from .trainer import PretrainConfig, load_settings, train

    overrides = [*args.overrides, *([f"output_dir={args.out}"] if args.out is not None else [])]
    cfg, settings = load_settings(args.config, overrides)
    # Paths from the file are taken from the file's folder, typed ones from the current directory.
    cfg = PretrainConfig(**paths.resolve_pretrain_paths(asdict(cfg), paths.config_dir(args.config), keys=settings.from_file))
    if "tokenizer" not in settings.from_file | settings.overridden:  # load_config copied `model` into it
        cfg.tokenizer = cfg.model
    if args.print_config:
        from ..cliutil import print_config

        return print_config(asdict(cfg))
    train(cfg)
    return 0
