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

from .cliutil import HelpFormatter, apply_conventions
from .errors import KbioxlmError

# Stage modules that contribute sub-commands, in help order.
STAGE_CLIS: tuple[str, ...] = (
    "kbioxlm.kb.cli",
    "kbioxlm.corpus.cli",
    "kbioxlm.pretrain.cli",
    "kbioxlm.tasks.cli",
    "kbioxlm.tasks.predict",
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
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the installed kbioxlm version and exit")
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
    apply_conventions(parser)
    return parser


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``); ``unknown`` when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kbioxlm")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `pretrain --config F a=1 --out D b=2`: argparse ends a `nargs="*"` positional at the first
        # option, so key=value overrides after an option arrive here; nothing else may be left over.
        if getattr(args, "trailing_overrides", False) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
