"""Command-line conventions shared by every ``kbioxlm`` sub-command.

One help formatter (defaults shown, paragraphs kept), hidden aliases for renamed flags, and the
``--print-config`` output, so the stage ``cli`` modules do not each grow their own variant. The
vocabulary (docs/quickstart.md, "Command-line conventions"): ``--lang`` is the language of the
input (the source), ``--target-lang`` the other one; ``--out`` is where a command writes; option
names of fine-tuning match the config keys (``--learning-rate`` = ``learning_rate``). Old spellings
stay accepted as hidden aliases so existing scripts keep working.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

import yaml

from .config import Option
from .errors import KbioxlmError

HIDDEN = "_kbioxlm_hidden_options"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where a default means something, keeps the paragraphs of a description.

    ``argparse.ArgumentDefaultsHelpFormatter`` alone would print ``(default: None)`` and
    ``(default: False)`` for every optional flag and repeat defaults a help text already states;
    ``RawDescriptionHelpFormatter`` alone would not wrap long single-line descriptions.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" in text
            or "default" in text.lower()
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
            or action.default == []
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        return text + " (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [p for p in text.split("\n")]
        return "\n".join(
            textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) if p.strip() else ""
            for p in paragraphs
        )

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, HIDDEN, ())
        if not hidden:
            return super()._format_action_invocation(action)
        saved = action.option_strings
        action.option_strings = [s for s in saved if s not in hidden]
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = saved


def hide_aliases(action: argparse.Action, *aliases: str) -> argparse.Action:
    """Mark old option strings of ``action`` as accepted but not shown in ``--help``.

    Use as ``hide_aliases(p.add_argument("--lang", "--source-lang", ...), "--source-lang")``: one
    action, so ``required=True`` and the destination work for every spelling.
    """
    unknown = [a for a in aliases if a not in action.option_strings]
    if unknown:
        raise ValueError(f"{unknown} are not option strings of {action.option_strings}")
    setattr(action, HIDDEN, tuple(aliases))
    return action


def name_and_file(value: str) -> tuple[str, str]:
    """``NAME=FILE`` (e.g. ``--extra-test es=test_es.conll``) as ``(name, file)``."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path or not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {value!r}")
    return name, path


def add_dataclass_options(p: argparse.ArgumentParser, cls: type) -> None:
    """One flag for each field of the dataclass ``cls`` with ``metadata=option(...)``
    (:func:`kbioxlm.config.option`), in field order: the spellings, hidden aliases, help, choices
    and ``required`` come from the metadata, the type and the default from the field (a ``bool``
    field is a switch). :func:`dataclass_kwargs` turns the parsed flags back into field values."""
    for f, opt in _options(cls):
        flags = opt.flags or ("--" + f.name.replace("_", "-"),)
        kwargs: dict[str, Any] = {"dest": opt.dest or f.name, "help": opt.help}
        parts = {t.strip() for t in str(f.type).split("|")}
        if opt.action == "append":
            kwargs.update(action="append", default=[])
        elif opt.type is None and "bool" in parts:
            kwargs.update(action="store_true")
        else:
            kwargs["type"] = opt.type or next((t for n, t in (("int", int), ("float", float)) if n in parts), str)
            if opt.required:
                kwargs["required"] = True
            elif f.default is not dataclasses.MISSING:
                kwargs["default"] = f.default
        if opt.type is not None and opt.action == "append":
            kwargs["type"] = opt.type
        if opt.choices is not None:
            kwargs["choices"] = list(opt.choices)
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        action = p.add_argument(*flags, **kwargs)
        if opt.hidden:
            hide_aliases(action, *opt.hidden)


def dataclass_kwargs(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The values of ``cls``'s flag fields (:func:`add_dataclass_options`) from parsed ``args``."""
    out: dict[str, Any] = {}
    for f, opt in _options(cls):
        value = getattr(args, opt.dest or f.name)
        if opt.to_field is not None:
            value = opt.to_field(value)
        for name in (f.name, *opt.also):
            out[name] = value
    return out


def _options(cls: type) -> list[tuple[dataclasses.Field[Any], Option]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``(command path, parser)`` for ``parser`` and every sub-command below it, depth first."""
    stack: list[tuple[str, argparse.ArgumentParser]] = [(parser.prog, parser)]
    while stack:
        name, p = stack.pop(0)
        yield name, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    if sub not in (q for _, q in stack):
                        stack.append((f"{name} {sub_name}", sub))


def apply_conventions(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)parser the shared formatter; called once by :func:`kbioxlm.cli.build_parser`."""
    for _, p in iter_parsers(parser):
        p.formatter_class = HelpFormatter


def program_parser(stages: Iterable[ModuleType], description: str | None = None) -> argparse.ArgumentParser:
    """The ``kbioxlm`` program's parser with the sub-commands of ``stages``, in order.

    A stage is a module whose ``register(subparsers)`` adds its commands, each with
    ``set_defaults(func=handler)``. :mod:`kbioxlm.cli` passes every stage; the pipeline passes the
    stages its steps run (:mod:`kbioxlm.pipeline.stages`), so both parse a command line alike.
    """
    parser = argparse.ArgumentParser(prog="kbioxlm", description=description, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {package_version()}",
        help="print the installed kbioxlm version and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for stage in stages:
        stage.register(sub)
    apply_conventions(parser)
    return parser


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``); ``unknown`` when not installed."""
    try:
        return version("kbioxlm")
    except PackageNotFoundError:
        return "unknown"


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` parsed by ``parser`` (a bad command line exits with status 2, argparse's way).

    ``pretrain --config F a=1 --out D b=2``: argparse ends a ``nargs="*"`` positional at the first
    option, so ``key=value`` overrides after an option are left over; a command that takes them
    (``trailing_overrides``) gets them appended to ``overrides``. Nothing else may be left over.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "trailing_overrides", False) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def call_command(args: argparse.Namespace) -> int:
    """Run the handler the parsed command registered (``args.func``) and return its exit status:
    a :class:`KbioxlmError` is printed as one line ``error: <reason>`` on stderr (status 2),
    Ctrl-C as ``error: interrupted`` (status 130)."""
    try:
        rc = args.func(args)
    except KbioxlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def add_print_config(p: argparse.ArgumentParser) -> None:
    """The ``--print-config`` flag of the config-driven commands (pretrain, finetune, benchmark, pipeline)."""
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the full effective configuration (defaults + config file + command line) as YAML "
        "and exit without running anything",
    )


def print_config(config: dict[str, Any], stream: Any = None) -> int:
    """Write ``config`` as YAML (key order kept) to stdout; returns the exit status 0."""
    (stream or sys.stdout).write(yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True))
    return 0


def _plain(value: Any) -> Any:
    """Paths, tuples and sets as YAML-safe strings and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
