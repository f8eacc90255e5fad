"""The one ``kbioxlm`` command.

Each stage package owns a ``cli`` module with ``register(subparsers)``; this module only wires them
together and turns :class:`KbioxlmError` into a one-line message with exit status 2. Heavy imports
(torch, transformers) happen inside the command handlers so ``kbioxlm --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .errors import KbioxlmError

# Stage modules that contribute sub-commands, in help order.
STAGE_CLIS: tuple[str, ...] = (
    "kbioxlm.kb.cli",
    "kbioxlm.corpus.cli",
    "kbioxlm.pretrain.cli",
    "kbioxlm.tasks.cli",
    "kbioxlm.probe.cli",
    "kbioxlm.translate.cli",
    "kbioxlm.llm.cli",
    "kbioxlm.demo",
    "kbioxlm.pipeline.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbioxlm",
        description="Knowledge-anchored cross-lingual biomedical encoders (KBioXLM method).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in STAGE_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        rc = args.func(args)
    except KbioxlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
