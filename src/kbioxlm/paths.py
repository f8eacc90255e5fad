"""Where a path in a config file points, independent of the current directory.

Every config file the toolkit reads (pipeline, pretraining, benchmark) follows one rule: a relative
path *inside the file* is taken from the file's own folder, so ``kbioxlm pipeline --config
/repo/configs/e2e-small-cpu.yaml`` does the same from any directory. Paths typed on the command line
(``--out``, ``key=value`` overrides, ``--shared``) are taken from the current directory, as shells do.

``${shared}`` (the folder with the real data) is, in this order: ``--shared`` (pipeline), the
environment variable ``KBIOXLM_SHARED``, the folder ``shared`` beside the project that holds the
config (``<project>/../shared``; the project is the nearest folder above the config with a
``pyproject.toml``, i.e. the repository root for the shipped configs), else ``../shared`` from the
current directory. Model and tokenizer values may be Hugging Face hub ids: such a value stays as it
is unless a file or folder of that name exists next to the config or it starts with ``./``/``../``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import KbioxlmError
from .hub import is_hub_id

SHARED_ENV = "KBIOXLM_SHARED"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|env:[A-Za-z_][A-Za-z0-9_]*)\}")


def absolute(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> Path:
    """``path`` made absolute against ``base`` (default: the current directory), ``..`` collapsed.

    Symbolic links are not resolved: the same spelling of a path always gives the same result.
    """
    p = os.path.expanduser(os.fspath(path))
    return Path(os.path.normpath(os.path.join(os.path.abspath(base) if base is not None else os.getcwd(), p)))


def project_root(start: str | os.PathLike[str]) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``pyproject.toml`` (``None`` if there is none)."""
    here = absolute(start)
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def config_dir(config: str | os.PathLike[str]) -> Path:
    """The folder relative paths inside ``config`` are taken from."""
    return absolute(config).parent


def default_shared(config: str | os.PathLike[str] | None = None) -> Path:
    """``${shared}`` when ``--shared`` is not given (see the module docstring for the order)."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return absolute(env)
    root = project_root(config_dir(config)) if config is not None else None
    if root is not None:
        return absolute("../shared", root)
    return absolute("../shared")


def anchor(config: str | os.PathLike[str]) -> Path:
    """The folder fingerprints spell paths relative to: the config's project, else its folder.

    Relative to the repository root, paths are spelled as they were when configs were read from the
    current directory, so steps that finished under that older rule keep their fingerprints.
    """
    return project_root(config_dir(config)) or config_dir(config)


def resolve_file(value: Any, base: Path) -> Any:
    """A file or folder value of a config (``str``) taken from ``base``; a ``#suffix`` (``path#mlm``) and
    a ``resource:`` prefix (files shipped with kbioxlm) are kept; other values are returned unchanged."""
    if not isinstance(value, str) or not value or value.startswith("resource:"):
        return value
    path, hash_, suffix = value.partition("#")
    return str(absolute(path, base)) + hash_ + suffix


def resolve_model(value: Any, base: Path) -> Any:
    """A model or tokenizer value: a local path taken from ``base``, a hub id as it is."""
    if not isinstance(value, str) or not value:
        return value
    local = absolute(value, base)
    if os.path.isabs(os.path.expanduser(value)) or local.exists() or value.startswith(("./", "../", "~")):
        return str(local)
    if is_hub_id(value):
        return value
    return str(local)


def substitute(value: Any, variables: dict[str, str], what: str) -> Any:
    """Replace ``${name}`` (a key of ``variables``) and ``${env:NAME}`` in every string of ``value``."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            key = m.group(1)
            if key.startswith("env:"):
                env = os.environ.get(key[4:])
                if env is None:
                    raise KbioxlmError(f"{what}: environment variable {key[4:]} is not set")
                return env
            if key not in variables:
                raise KbioxlmError(f"{what}: unknown variable ${{{key}}} (known: {', '.join(sorted(variables))})")
            return variables[key]

        return VAR.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, variables, f"{what}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute(v, variables, f"{what}.{k}") for k, v in value.items()}
    return value


# Keys of a pretraining config that name files or folders (``model``/``tokenizer`` may be hub ids).
PRETRAIN_FILE_KEYS = ("kept_ids", "output_dir", "eval_files", "train_files")
PRETRAIN_MODEL_KEYS = ("model", "tokenizer")


def resolve_pretrain_paths(cfg: dict[str, Any], base: Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The path values of a pretraining config (all, or only ``keys``) taken from ``base``, in place.

    ``train_files``/``eval_files`` may be a comma-separated string or a list; ``resume_from_checkpoint``
    is a path unless it is ``auto``.
    """

    def wanted(k: str) -> bool:
        return k in cfg and cfg[k] is not None and (keys is None or k in keys)

    for k in PRETRAIN_MODEL_KEYS:
        if wanted(k):
            cfg[k] = resolve_model(cfg[k], base)
    for k in PRETRAIN_FILE_KEYS:
        if not wanted(k):
            continue
        v = cfg[k]
        if isinstance(v, str) and k in ("train_files", "eval_files"):
            cfg[k] = ",".join(resolve_file(x.strip(), base) for x in v.split(",") if x.strip())
        elif isinstance(v, list):
            cfg[k] = [resolve_file(str(x), base) for x in v]
        else:
            cfg[k] = resolve_file(v, base)
    if wanted("resume_from_checkpoint") and cfg["resume_from_checkpoint"] != "auto":
        cfg["resume_from_checkpoint"] = resolve_file(cfg["resume_from_checkpoint"], base)
    return cfg


def resolve_benchmark_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """A benchmark config's paths (models, data_root, the files of datasets given by paths) from ``base``."""
    out = dict(raw)
    if isinstance(out.get("models"), list):
        models = []
        for m in out["models"]:
            if isinstance(m, str):
                m = {"name": Path(m).name or m, "path": m}
            if isinstance(m, dict):
                m = {**m, **{k: resolve_model(m[k], base) for k in ("path", "tokenizer") if m.get(k)}}
            models.append(m)
        out["models"] = models
    if out.get("data_root"):
        out["data_root"] = resolve_file(str(out["data_root"]), base)
    if isinstance(out.get("tasks"), list):
        tasks = []
        for t in out["tasks"]:
            if isinstance(t, dict) and isinstance(t.get("files"), dict):
                t = {
                    **t,
                    "files": {
                        lang: (
                            {s: resolve_file(f, base) for s, f in splits.items()}
                            if isinstance(splits, dict)
                            else splits
                        )
                        for lang, splits in t["files"].items()
                    },
                }
            tasks.append(t)
        out["tasks"] = tasks
    return out


def portable(value: Any, root: Path) -> Any:
    """``value`` (strings, lists, dicts) with absolute paths below ``root`` or its parent spelled
    relative to ``root`` (``/repo/runs/x`` → ``runs/x``, ``/shared/d`` → ``../shared/d``).

    Used for fingerprints: the same file reached through a differently spelled config path, or from
    another directory, gives the same fingerprint as before.
    """
    if isinstance(value, str):
        return _portable_text(value, root)
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    if isinstance(value, tuple):
        return [portable(v, root) for v in value]
    if isinstance(value, dict):
        return {portable(k, root) if isinstance(k, str) else k: portable(v, root) for k, v in value.items()}
    return value


def _portable_text(text: str, root: Path) -> str:
    prefixes = [(str(root) + os.sep, "")]
    if root.parent != root and str(root.parent) != os.sep:
        prefixes.append((str(root.parent) + os.sep, ".." + os.sep))
    for prefix, repl in prefixes:  # the longer prefix first
        text = re.sub(r"(^|(?<=[\s=,:\"'\[(]))" + re.escape(prefix), repl, text)
    return text


def display(text: str, cwd: Path | None = None) -> str:
    """A command line for the screen: absolute paths below the current directory shortened to relative."""
    here = absolute(cwd) if cwd is not None else absolute(".")
    if str(here) == os.sep:
        return text
    return re.sub(r"(^|(?<=[\s=,:\"'\[(]))" + re.escape(str(here) + os.sep), "", text)
