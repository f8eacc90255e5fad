"""``kbioxlm pretrain --config F [key=value ...]`` (DESIGN.md section 8).

Registered by :mod:`kbioxlm.pretrain.cli` through :func:`register_pretrain`. The same command runs
on one process or many: ``torchrun --nproc_per_node N -m kbioxlm pretrain ...`` or
``accelerate launch [--use_deepspeed ...] -m kbioxlm pretrain ...``; accelerate reads the
launcher's environment. torch and transformers are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/pretrain-tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override any config key")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .trainer import load_config, train

    cfg = load_config(args.config, args.overrides)
    train(cfg)
    return 0
