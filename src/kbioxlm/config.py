"""One loader for every config file: a YAML mapping + ``key=value`` overrides → checked settings
(docs/design.md, "CLI contract").

The pretraining, benchmark and pipeline configs are read here: the file's bytes, its YAML and its
top level (a mapping) checked with errors that name ``file[:line]``, and ``key=value`` overrides
from the command line (values parsed as YAML, dotted keys reaching into mappings) merged over the
defaults. Unknown keys are errors that list the known ones: a typo must not silently run with a
default. What each command's settings *are* lives beside the command (dataclasses such as
``FinetuneConfig``); where relative paths in a file point is :mod:`kbioxlm.paths`' job.

Settings that also are command-line flags declare them once, in the dataclass field's metadata
(:func:`option`); :func:`kbioxlm.cliutil.add_dataclass_options` builds the flags from it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import KbioxlmError, where
from .io import load_yaml

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------------ the file
def read_mapping(
    path: PathLike,
    *,
    not_mapping: str = "a config must be a mapping of keys to values",
    missing: str | None = None,
    allow_empty: bool = True,
) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML config file as a mapping and the line of each top-level key.

    Bad bytes and YAML errors are ``file:line: reason``; an empty file is an empty mapping; any
    other top level (and an empty file unless ``allow_empty``) is ``file: <not_mapping>``. With ``missing``, a path that is not a file is
    ``file: <missing>`` (else the reader's ``cannot read config (...)``).
    """
    if missing is not None and not Path(path).is_file():
        raise KbioxlmError(f"{path}: {missing}")
    data, lines = load_yaml(path)
    if data is None and allow_empty:
        data = {}
    if not isinstance(data, dict):
        raise KbioxlmError(f"{path}: {not_mapping}")
    return data, lines


def check_keys(d: Any, allowed: Collection[str], what: str, lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """``d`` itself when it is a mapping whose keys are all in ``allowed``; otherwise one error naming
    the unknown keys and the allowed ones (at the first unknown key's line when ``lines`` has it)."""
    if not isinstance(d, dict):
        raise KbioxlmError(f"{what}: expected a mapping, got {type(d).__name__}")
    extra = set(d) - set(allowed)
    if extra:
        names = sorted(map(str, extra))
        line = min((lines[n] for n in names if n in lines), default=None) if lines else None
        raise KbioxlmError(
            f"{where(what, line)}: unknown key(s) {', '.join(names)} (allowed: {', '.join(sorted(allowed))})"
        )
    return d


# -------------------------------------------------------------------------------- the overrides
def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, value)`` with the value parsed as YAML (``''`` → ``None``; text that is
    not valid YAML stays text)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise KbioxlmError(f"override {item!r} is not key=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


@dataclass
class Settings:
    """Defaults + a config file + ``key=value`` overrides, with where each top-level key came from."""

    values: dict[str, Any]
    path: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # key in the file -> its line
    from_file: set[str] = field(default_factory=set)  # top-level keys (aliases resolved) the file set
    overridden: set[str] = field(default_factory=set)  # ... and those the command line set

    def where(self, key: str | None) -> str:
        """``file:line`` of a top-level key (the file alone when the line is unknown)."""
        return where(self.path, self.lines.get(key) if key else None)

    def locate(self, exc: KbioxlmError, prefix: str = "config: ") -> KbioxlmError:
        """A checking error ``config: <key> ...`` moved to the key's place in the file.

        A problem with a value from the file names the file and the key's line; one from a
        ``key=value`` override stays as it is (the command line is in front of the user).
        """
        msg = str(exc)
        if self.path is None:
            return exc
        m = re.match(re.escape(prefix) + r"(?:key )?'?(\w+)", msg)
        key = m.group(1) if m else None
        if key in self.overridden:
            return exc
        return KbioxlmError(f"{self.where(key)}: {msg.removeprefix(prefix)}")


def load_settings(
    path: PathLike | None,
    overrides: Iterable[str],
    defaults: Mapping[str, Any],
    *,
    aliases: Mapping[str, str] | None = None,
    mappings: Collection[str] = (),
) -> Settings:
    """``defaults`` updated by the file at ``path`` (if any), then by the ``key=value`` ``overrides``.

    Keys are the keys of ``defaults`` (or one of ``aliases``); a dotted key ``a.b.c`` reaches into
    the mapping-valued keys listed in ``mappings``. An unknown key is an error listing the known
    ones, at its line for a key of the file.
    """
    aliases = aliases or {}
    settings = Settings(copy.deepcopy(dict(defaults)), str(path) if path is not None else None)
    if path is not None:
        data, settings.lines = read_mapping(path)
        for k, v in data.items():
            try:
                head = set_dotted(settings.values, str(k), v, defaults, aliases, mappings)
            except KbioxlmError as exc:
                raise KbioxlmError(f"{where(path, settings.lines.get(str(k)))}: {exc}") from None
            settings.from_file.add(head)
    for item in overrides:
        key, value = parse_override(item)
        settings.overridden.add(set_dotted(settings.values, key, value, defaults, aliases, mappings))
    settings.from_file -= settings.overridden
    return settings


def set_dotted(
    values: dict[str, Any],
    key: str,
    value: Any,
    known: Collection[str],
    aliases: Mapping[str, str],
    mappings: Collection[str],
) -> str:
    """Set ``key`` (``head`` or ``head.sub.sub``) in ``values``; returns ``head`` with aliases resolved."""
    head, _, rest = key.partition(".")
    head = aliases.get(head, head)
    if head not in known:
        raise KbioxlmError(f"unknown config key {head!r} (known: {', '.join(sorted(known))})")
    if rest:
        if head not in mappings:
            raise KbioxlmError(f"config key {head!r} is not a mapping; cannot set {key!r}")
        if not isinstance(values.get(head), dict):
            values[head] = {}
        node = values[head]
        parts = rest.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    else:
        values[head] = value
    return head


# ------------------------------------------------------------------------- settings as flags
@dataclass(frozen=True)
class Option:
    """How a dataclass field appears on the command line (the field's ``metadata["option"]``)."""

    help: str
    flags: tuple[str, ...] = ()  # default: --field-name
    hidden: tuple[str, ...] = ()  # old spellings: accepted, not shown in --help
    dest: str | None = None  # argparse's name (default: the field's)
    type: Callable[[str], Any] | None = None  # default: from the annotation (int, float, str; bool: a switch)
    choices: tuple[str, ...] | None = None
    required: bool = False
    action: str | None = None  # e.g. "append" (then the default is [])
    metavar: str | None = None
    to_field: Callable[[Any], Any] | None = None  # parsed value -> the field's value
    also: tuple[str, ...] = ()  # further fields that take the same value


def option(help: str, **kwargs: Any) -> dict[str, Any]:
    """Field metadata that makes a dataclass field a command-line flag:
    ``lr: float = field(default=5e-5, metadata=option("learning rate", flags=("--learning-rate", "--lr"), hidden=("--lr",)))``."""
    return {"option": Option(help, **kwargs)}
