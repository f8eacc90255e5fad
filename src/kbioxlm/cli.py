"""The one ``kbioxlm`` command.

Each stage package owns a ``cli`` module with ``register(subparsers)``; this module only wires them
together (it is the top of the package graph: nothing imports it but ``__main__``) and turns
:class:`KbioxlmError` into a one-line message with exit status 2. Heavy imports (torch,
transformers) happen inside the command handlers so ``kbioxlm --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import demo
from .cliutil import call_command, parse_command, program_parser
from .corpus import cli as corpus_cli
from .kb import cli as kb_cli
from .llm import cli as llm_cli
from .pipeline import cli as pipeline_cli
from .pretrain import cli as pretrain_cli
from .probe import cli as probe_cli
from .tasks import cli as tasks_cli
from .tasks import predict
from .translate import cli as translate_cli

# Stage modules that contribute sub-commands, in help order.
STAGE_CLIS = (
    kb_cli,
    corpus_cli,
    pretrain_cli,
    tasks_cli,
    predict,
    probe_cli,
    translate_cli,
    llm_cli,
    demo,
    pipeline_cli,
)


def build_parser() -> argparse.ArgumentParser:
    return program_parser(STAGE_CLIS, "Knowledge-anchored cross-lingual biomedical encoders (KBioXLM method).")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_command(build_parser(), argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return call_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
