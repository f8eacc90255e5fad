"""``kbioxlm benchmark``: the models × datasets × directions × settings × seeds matrix, resumable.

Each *cell* (one fine-tuning run) trains into a hidden ``.partial`` folder that is renamed into place
only when it finished, then appends one line to ``OUT/results.jsonl``. A cell already in that file
is skipped on the next invocation, so an interrupted benchmark is simply started again with the same
command. After every cell the Markdown tables (``results.md``, laid out like the paper's Tables 4-7)
and the bar chart (``results.png``) are rewritten from ``results.jsonl``.

The protocols (which file is which language, few-shot sampling, held-out dev sets) live in
:mod:`kbioxlm.tasks.protocols`; fine-tuning itself in :mod:`kbioxlm.tasks.finetune`. This module
only expands the matrix, runs cells and keeps the books.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import paths
from ..config import check_keys, read_mapping
from ..errors import KbioxlmError, where
from ..io import atomic_write, dumps, write_json
from ..progress import progress as progress_bar
from . import protocols as P
from .finetune import FinetuneConfig, run_finetune
from .matrix import BenchmarkConfig, Cell, ModelSpec
from .report import write_report

log = logging.getLogger("kbioxlm.benchmark")

RESULTS = "results.jsonl"
RunFn = Callable[[dict[str, Any]], dict[str, Any]]
"""``run_fn(finetune_kwargs) -> results``; the default builds a ``FinetuneConfig`` and calls ``run_finetune``."""

CONFIG_KEYS = {
    "data_root",
    "models",
    "tasks",
    "directions",
    "settings",
    "seeds",
    "train_seed",
    "fewshot_mode",
    "fewshot_directions",
    "monolingual_langs",
    "dev_policy",
    "finetune",
    "finetune_per_task",
    "max_train_examples",
    "max_dev_examples",
    "max_test_examples",
}
# Keys the benchmark sets per cell; a config must not set them in ``finetune``.
CELL_KEYS = {
    "task",
    "model",
    "tokenizer",
    "train",
    "dev",
    "test",
    "out",
    "seed",
    "max_train_examples",
    "train_lang",
    "dev_lang",
    "test_lang",
    "extra_tests",
}
# Config spellings of the fine-tuning hyper-parameters, as in the pretraining configs and on the command
# line (`finetune --learning-rate`), for FinetuneConfig's field names.
HPARAM_ALIASES = {"learning_rate": "lr", "head_learning_rate": "head_lr"}
# Hyper-parameters that cannot change a score: changing them does not invalidate finished cells.
NOT_FINGERPRINTED = {"progress", "num_threads"}


# ------------------------------------------------------------------------------------------- config


def _as_int(value: Any, what: str, src: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KbioxlmError(
            f"{src}: {what} must be a non-negative integer{' or null' if allow_none else ''}, got {value!r}"
        )
    return value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(d: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads ``5e-5`` (no dot) as a string; turn such values into floats."""
    return {k: (float(v) if isinstance(v, str) and _FLOAT.fullmatch(v) else v) for k, v in d.items()}


def _hparams(raw: Any, what: str, src: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise KbioxlmError(f"{src}: {what} must be a mapping of fine-tuning hyper-parameters")
    bad = CELL_KEYS & set(raw)
    if bad:
        raise KbioxlmError(
            f"{src}: {what}: {', '.join(sorted(map(str, bad)))} is set per cell by the benchmark "
            "(use models/tasks/seeds/train_seed/max_train_examples)"
        )
    out = _numbers(raw)
    for alias, name in HPARAM_ALIASES.items():  # the pretraining configs' and the CLI's spelling
        if alias in out:
            if name in out:
                raise KbioxlmError(f"{src}: {what}: {alias} and {name} are the same setting; give one")
            out[name] = out.pop(alias)
    _check_hparam_types(out, what, src)
    return out


def _hparam_types() -> dict[str, tuple[set[str], bool]]:
    """``FinetuneConfig`` field -> (accepted kinds among int/float/bool/str, None allowed)."""
    kinds: dict[str, tuple[set[str], bool]] = {}
    for f in dataclasses.fields(FinetuneConfig):
        if f.name in CELL_KEYS:
            continue
        parts = {p.strip() for p in str(f.type).split("|")}
        allowed = {p for p in parts if p in ("int", "float", "bool", "str")}
        if "float" in allowed:
            allowed.add("int")
        kinds[f.name] = (allowed, "None" in parts)
    return kinds


def _check_hparam_types(hp: dict[str, Any], what: str, src: str) -> None:
    """Unknown names and wrong types fail at load time (so ``--dry-run`` catches them), not in a cell."""
    kinds = _hparam_types()
    for key, value in hp.items():
        if key not in kinds:
            raise KbioxlmError(f"{src}: {what}: unknown hyper-parameter {key!r} (known: {', '.join(sorted(kinds))})")
        allowed, none_ok = kinds[key]
        if value is None and none_ok:
            continue
        kind = "bool" if isinstance(value, bool) else type(value).__name__
        if kind not in allowed:
            words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
            want = (
                words["float"]
                if "float" in allowed
                else " or ".join(words[k] for k in sorted(allowed)) or "not settable"
            )
            raise KbioxlmError(f"{src}: {what}.{key} must be {want}{' or null' if none_ok else ''}, got {value!r}")


def read_config_file(path: str | os.PathLike[str], shared: str | None = None) -> dict[str, Any]:
    """A benchmark YAML as a mapping, ``${shared}``/``${env:NAME}`` substituted and relative paths taken
    from the file's folder (:mod:`kbioxlm.paths`), so the config works from any directory."""

    p = Path(path)
    raw, _lines = read_mapping(
        p, missing="no such config file", not_mapping="a benchmark config must be a YAML mapping", allow_empty=False
    )
    raw = paths.substitute(raw, {"shared": shared or str(paths.default_shared(p))}, str(p))
    return paths.resolve_benchmark_paths(raw, paths.config_dir(p))


def load_benchmark_config(path: str | os.PathLike[str]) -> BenchmarkConfig:
    """Read and validate a benchmark YAML config; every problem is one ``file[:line]: reason``.

    Without ``data_root`` (and ``$KBIOXLM_DATA``) the release is looked for under ``${shared}``.
    """
    raw = read_config_file(path)
    if not raw.get("data_root") and not os.environ.get("KBIOXLM_DATA"):
        raw["data_root"] = str(paths.default_shared(path) / "data" / "kbioxlm-release")
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> BenchmarkConfig:
    src = source
    check_keys(raw, CONFIG_KEYS, src)
    # models
    models_raw = raw.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise KbioxlmError(f"{src}: 'models' must be a non-empty list of {{name, path}}")
    models: list[ModelSpec] = []
    for i, m in enumerate(models_raw):
        if isinstance(m, str):
            m = {"name": Path(m).name or m, "path": m}
        if not isinstance(m, dict) or not m.get("path"):
            raise KbioxlmError(f"{src}: models[{i}] needs at least 'path' (and a 'name' for the tables)")
        extra = set(m) - {"name", "path", "tokenizer"}
        if extra:
            raise KbioxlmError(f"{src}: models[{i}]: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        models.append(
            ModelSpec(
                name=str(m.get("name") or Path(str(m["path"])).name),
                path=str(m["path"]),
                tokenizer=str(m["tokenizer"]) if m.get("tokenizer") else None,
            )
        )
    slugs = [m.slug for m in models]
    if len(set(slugs)) != len(slugs):
        raise KbioxlmError(f"{src}: model names must be unique (after replacing odd characters): {slugs}")
    # tasks
    release = P.release_datasets(raw.get("data_root"))
    tasks_raw = raw.get("tasks", ["ade", "gad", "hoc"])
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise KbioxlmError(f"{src}: 'tasks' must be a non-empty list")
    datasets: list[P.DatasetSpec] = []
    for i, t in enumerate(tasks_raw):
        if isinstance(t, str):
            if t.lower() not in release:
                hint = " (BC5CDR is not in the release; give it by paths)" if "cdr" in t.lower() else ""
                raise KbioxlmError(
                    f"{src}: tasks[{i}]: unknown release dataset {t!r}; "
                    f"known: {', '.join(release)}{hint}; or give {{name, type, files}}"
                )
            datasets.append(release[t.lower()])
        else:
            datasets.append(P.user_dataset(t, f"{src}: tasks[{i}]"))
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise KbioxlmError(f"{src}: task names must be unique: {names}")

    def directions(key: str, default: Any) -> list[tuple[str, str]]:
        val = raw.get(key, default)
        if not isinstance(val, list) or not val:
            raise KbioxlmError(f"{src}: {key!r} must be a non-empty list such as [en-zh, zh-en]")
        try:
            return [P.parse_direction(d) for d in val]
        except KbioxlmError as exc:
            raise KbioxlmError(f"{src}: {key}: {exc}") from None

    dirs = directions("directions", ["en-zh", "zh-en"])
    fs_dirs = directions("fewshot_directions", None) if raw.get("fewshot_directions") is not None else None
    settings_raw = raw.get("settings", ["zero-shot"])
    if not isinstance(settings_raw, list) or not settings_raw:
        raise KbioxlmError(f"{src}: 'settings' must be a non-empty list")
    try:
        settings = [P.parse_setting(s) for s in settings_raw]
    except KbioxlmError as exc:
        raise KbioxlmError(f"{src}: settings: {exc}") from None
    for key, vals in (("directions", dirs), ("settings", settings)):
        if len(set(vals)) != len(vals):
            raise KbioxlmError(f"{src}: {key!r} lists the same entry twice")
    seeds = raw.get("seeds", [1, 2, 3])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) != len(seeds):
        raise KbioxlmError(f"{src}: 'seeds' must be a non-empty list of distinct integers")
    seeds = [_as_int(s, "each seed", src, allow_none=False) for s in seeds]
    mono = raw.get("monolingual_langs")
    if mono is not None and (not isinstance(mono, list) or not all(isinstance(x, str) for x in mono)):
        raise KbioxlmError(f"{src}: 'monolingual_langs' must be a list of language codes such as [en, zh]")
    fewshot_mode = raw.get("fewshot_mode", "add")
    if fewshot_mode not in P.FEWSHOT_MODES:
        raise KbioxlmError(f"{src}: fewshot_mode must be one of {', '.join(P.FEWSHOT_MODES)}")
    dev_policy = raw.get("dev_policy", "heldout")
    if dev_policy not in P.DEV_POLICIES:
        raise KbioxlmError(f"{src}: dev_policy must be one of {', '.join(P.DEV_POLICIES)}")
    per_task_raw = raw.get("finetune_per_task") or {}
    if not isinstance(per_task_raw, dict):
        raise KbioxlmError(f"{src}: finetune_per_task must map a task name (or ner/re/dc) to hyper-parameters")
    per_task = {str(k): _hparams(v, f"finetune_per_task.{k}", src) for k, v in per_task_raw.items()}
    stray = set(per_task) - set(names) - set(P.TASK_TYPES)
    if stray:
        raise KbioxlmError(
            f"{src}: finetune_per_task: {', '.join(sorted(map(str, stray)))} is neither a task of this config nor ner/re/dc"
        )
    return BenchmarkConfig(
        models=models,
        datasets=datasets,
        directions=dirs,
        settings=settings,
        seeds=[int(s) for s in seeds if s is not None],
        train_seed=_as_int(raw.get("train_seed"), "train_seed", src),
        fewshot_mode=fewshot_mode,
        fewshot_directions=fs_dirs,
        monolingual_langs=[str(x) for x in mono] if mono is not None else None,
        dev_policy=dev_policy,
        finetune=_hparams(raw.get("finetune"), "finetune", src),
        finetune_per_task=per_task,
        max_train_examples=_as_int(raw.get("max_train_examples"), "max_train_examples", src),
        max_dev_examples=_as_int(raw.get("max_dev_examples"), "max_dev_examples", src),
        max_test_examples=_as_int(raw.get("max_test_examples"), "max_test_examples", src),
        source=src,
    )


def effective_config(cfg: BenchmarkConfig) -> dict[str, Any]:
    """A parsed config back as the YAML mapping it stands for, every default filled in (``--print-config``)."""

    def files(d: P.DatasetSpec) -> dict[str, Any]:
        return {lang: {s: (str(f) if f else None) for s, f in splits.items()} for lang, splits in d.files.items()}

    return {
        "models": [{k: v for k, v in dataclasses.asdict(m).items() if v is not None} for m in cfg.models],
        "tasks": [
            {"name": d.name, "type": d.task, "unit": d.unit, "display": d.display, "files": files(d)}
            for d in cfg.datasets
        ],
        "directions": [f"{s}-{t}" for s, t in cfg.directions],
        "settings": [P.setting_name(s, k) for s, k in cfg.settings],
        "seeds": cfg.seeds,
        "train_seed": cfg.train_seed,
        "fewshot_mode": cfg.fewshot_mode,
        "fewshot_directions": [f"{s}-{t}" for s, t in cfg.fewshot_directions] if cfg.fewshot_directions else None,
        "monolingual_langs": cfg.monolingual_langs,
        "dev_policy": cfg.dev_policy,
        "finetune": cfg.finetune,
        "finetune_per_task": cfg.finetune_per_task,
        "max_train_examples": cfg.max_train_examples,
        "max_dev_examples": cfg.max_dev_examples,
        "max_test_examples": cfg.max_test_examples,
    }


def expand(cfg: BenchmarkConfig) -> list[Cell]:
    """All cells, model-major (a model's row of the tables fills up first), in config order.

    Monolingual cells run once per language: ``monolingual_langs``, by default every language of
    ``directions`` in order of appearance (en-zh → EN-to-EN and CN-to-CN, as in Table 6).
    Cells a dataset cannot serve (a language it has no files for) are left out with a warning.
    """
    mono_langs = cfg.monolingual_langs
    if mono_langs is None:
        mono_langs = []
        for s, t in cfg.directions:
            for lang in (s, t):
                if lang not in mono_langs:
                    mono_langs.append(lang)
    fs_dirs = cfg.fewshot_directions or cfg.directions
    cells: list[Cell] = []
    for m in cfg.models:
        for setting, shots in cfg.settings:
            if setting == "monolingual":
                pairs = [(lang, lang) for lang in mono_langs]
            elif setting == "few-shot":
                pairs = list(fs_dirs)
            else:
                pairs = list(cfg.directions)
            for src, tgt in pairs:
                for ds in cfg.datasets:
                    if src not in ds.files or tgt not in ds.files:
                        log.warning(
                            "skipping %s %s %s-%s: no %s files",
                            ds.name,
                            setting,
                            src,
                            tgt,
                            src if src not in ds.files else tgt,
                        )
                        continue
                    for seed in cfg.seeds:
                        cells.append(Cell(m, ds, setting, shots, src, tgt, seed))
    return cells


def finetune_kwargs(cfg: BenchmarkConfig, cell: Cell) -> dict[str, Any]:
    """Hyper-parameters of one cell: ``finetune``, then ``finetune_per_task[<type>]``, then ``[<name>]``."""
    kw = dict(cfg.finetune)
    kw.update(cfg.finetune_per_task.get(cell.dataset.task, {}))
    kw.update(cfg.finetune_per_task.get(cell.dataset.name, {}))
    return kw


def train_seed(cfg: BenchmarkConfig, cell: Cell) -> int:
    return cfg.train_seed if cfg.train_seed is not None else cell.seed


def fingerprint(cfg: BenchmarkConfig, cell: Cell) -> str:
    """What makes a finished cell reusable: model, files, protocol knobs and hyper-parameters.

    File *names* (not absolute paths) are hashed so a moved checkout still resumes.
    """
    files = {
        lang: {s: (p.name if p else None) for s, p in splits.items()} for lang, splits in cell.dataset.files.items()
    }
    model, tokenizer = cell.model.path, cell.model.tokenizer
    if Path(cfg.source).is_file():  # the model as spelled from the config's project (kbioxlm.paths.portable)
        model, tokenizer = paths.portable([model, tokenizer], paths.anchor(cfg.source))
    material = {
        "model": model,
        "tokenizer": tokenizer,
        "dataset": cell.dataset.name,
        "task": cell.dataset.task,
        "files": files,
        "unit": cell.dataset.unit,
        "setting": cell.setting,
        "shots": cell.shots,
        "direction": cell.direction,
        "seed": cell.seed,
        "train_seed": train_seed(cfg, cell),
        "fewshot_mode": cfg.fewshot_mode if cell.setting == "few-shot" else None,
        "dev_policy": cfg.dev_policy if cell.dataset.dev_overlaps_test else None,
        "max": [cfg.max_train_examples, cfg.max_dev_examples, cfg.max_test_examples],
        "finetune": {k: v for k, v in finetune_kwargs(cfg, cell).items() if k not in NOT_FINGERPRINTED},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ running


def default_run_fn(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune with :func:`kbioxlm.tasks.finetune.run_finetune`."""
    try:
        cfg = FinetuneConfig(**kwargs)
    except TypeError as exc:
        known = ", ".join(f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in CELL_KEYS)
        raise KbioxlmError(f"benchmark finetune settings: {exc} (known hyper-parameters: {known})") from exc
    return run_finetune(cfg)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Finished cells. A torn last line (killed while appending) is ignored with a warning."""
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "cell" not in rec:
                raise ValueError("not a results record")
        except ValueError as exc:
            if i >= len(lines) - 1:  # last line without its newline: torn append
                log.warning("%s: ignoring an incomplete last line", where(path, i))
                continue
            raise KbioxlmError(f"{where(path, i)}: corrupt results line ({exc})") from exc
        out.append(rec)
    return out


def _append_result(path: Path, rec: dict[str, Any]) -> None:
    """Append one line; O_APPEND + fsync so a crash leaves either the whole line or a torn tail."""
    data = (dumps(rec) + "\n").encode("utf-8")
    if path.exists() and path.stat().st_size:
        raw = path.read_bytes()
        if not raw.endswith(b"\n"):  # drop a torn tail (ignored by read_results) before appending
            with atomic_write(path, "wb", encoding=None) as fh:
                fh.write(raw[: raw.rfind(b"\n") + 1])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _result_record(
    cfg: BenchmarkConfig, cell: Cell, res: dict[str, Any], data: P.CellData | None, seconds: float, fp: str
) -> dict[str, Any]:
    man = data.manifest if data is not None else {}
    return {
        "cell": cell.id,
        "model": cell.model.name,
        "model_path": cell.model.path,
        "dataset": cell.dataset.name,
        "dataset_label": cell.dataset.label,
        "task": cell.dataset.task,
        "setting": cell.setting,
        "shots": cell.shots,
        "direction": cell.direction,
        "source_lang": cell.source,
        "target_lang": cell.target,
        "seed": cell.seed,
        "sampling_seed": cell.seed if cell.setting == "few-shot" else None,
        "train_seed": train_seed(cfg, cell),
        "fewshot_mode": cfg.fewshot_mode if cell.setting == "few-shot" else None,
        "metric": res.get("metric"),
        "f1": res.get("f1"),
        "precision": res.get("precision"),
        "recall": res.get("recall"),
        "n_test": res.get("n_test", man.get("n_test")),
        "n_train": man.get("n_train"),
        "n_dev": man.get("n_dev"),
        "seconds": round(seconds, 1),
        "folder": str(Path("cells") / cell.folder),
        "fingerprint": fp,
    }


def _recover(cfg: BenchmarkConfig, cell: Cell, final: Path, fp: str) -> dict[str, Any] | None:
    """A cell folder that was renamed into place but whose results line was never appended."""
    try:
        meta = json.loads((final / "cell.json").read_text(encoding="utf-8"))
        res = json.loads((final / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != fp or meta.get("cell") != cell.id:
        return None
    rec = _result_record(cfg, cell, res, None, float(meta.get("seconds", 0.0)), fp)
    man = meta.get("data", {})
    rec.update({"n_train": man.get("n_train"), "n_dev": man.get("n_dev")})
    return rec


def _cell_data(cfg: BenchmarkConfig, cell: Cell, reader: P.Reader) -> P.CellData:
    """A cell's train/dev/test records; a gap in the config (a split not given, a path that does not
    exist) names the config too."""
    try:
        return P.build_cell_data(
            cell.dataset,
            cell.setting,
            cell.source,
            cell.target,
            shots=cell.shots,
            sampling_seed=cell.seed,
            fewshot_mode=cfg.fewshot_mode,
            dev_policy=cfg.dev_policy,
            max_train_examples=cfg.max_train_examples,
            max_dev_examples=cfg.max_dev_examples,
            max_test_examples=cfg.max_test_examples,
            reader=reader,
        )
    except KbioxlmError as exc:
        msg = str(exc)
        config_gap = msg.startswith(("dataset ", "few-shot ")) or ": no such file (check data_root" in msg
        if config_gap and cfg.source not in msg:
            raise KbioxlmError(f"{cfg.source}: {msg}") from None
        raise


def run_cell(
    cfg: BenchmarkConfig, cell: Cell, out: Path, run_fn: RunFn, reader: P.Reader, progress: bool = True
) -> dict[str, Any]:
    """Train and test one cell into ``out/cells/<...>``; returns its results line (not yet appended)."""
    fp = fingerprint(cfg, cell)
    final = out / "cells" / cell.folder
    partial = final.parent / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    data = _cell_data(cfg, cell, reader)
    partial.mkdir(parents=True)
    try:
        return _run_in_partial(cfg, cell, out, run_fn, data, partial, final, fp, progress)
    except BaseException:  # a failed or interrupted cell leaves no half-written folder behind
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _run_in_partial(
    cfg: BenchmarkConfig,
    cell: Cell,
    out: Path,
    run_fn: RunFn,
    data: P.CellData,
    partial: Path,
    final: Path,
    fp: str,
    progress: bool,
) -> dict[str, Any]:
    write_json(partial / "sampled_ids.json", data.sampled_ids)
    hp = finetune_kwargs(cfg, cell)
    kwargs = dict(hp)
    kwargs.update(
        task=cell.dataset.task,
        model=cell.model.path,
        tokenizer=cell.model.tokenizer,
        train=data.train,
        dev=data.dev,
        test=data.test,
        out=str(partial),
        seed=train_seed(cfg, cell),
    )
    kwargs.setdefault("progress", progress)  # records keep their own ``lang`` (few-shot train mixes two)
    meta = {
        "cell": cell.id,
        "fingerprint": fp,
        "model": dataclasses.asdict(cell.model),
        "setting": cell.setting_name,
        "direction": cell.direction,
        "seed": cell.seed,
        "train_seed": train_seed(cfg, cell),
        "finetune": hp,
        "data": data.manifest,
    }
    write_json(partial / "cell.json", meta)
    t0 = time.perf_counter()
    res = run_fn(kwargs)
    seconds = time.perf_counter() - t0
    if not isinstance(res, dict) or "f1" not in res:
        raise KbioxlmError(f"cell {cell.id}: fine-tuning returned no 'f1' in its results")
    saved = partial / "results.json"
    if not saved.exists():  # the finetune contract writes it; keep the folder self-contained
        write_json(saved, res)
    else:  # it names the folder it was trained in; point it at the folder it will live in
        stored = json.loads(saved.read_text(encoding="utf-8"))
        if isinstance(stored.get("config"), dict) and stored["config"].get("out") == str(partial):
            stored["config"]["out"] = str(final)
            write_json(saved, stored)
    meta["seconds"] = round(seconds, 1)
    write_json(partial / "cell.json", meta)
    if final.exists():  # a stale folder of an unfinished/other run of this cell
        shutil.rmtree(final)
    os.replace(partial, final)
    return _result_record(cfg, cell, res, data, seconds, fp)


def run_benchmark(
    cfg: BenchmarkConfig,
    out: str | os.PathLike[str],
    *,
    run_fn: RunFn | None = None,
    reader: P.Reader | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Run every unfinished cell; returns ``{"cells", "ran", "skipped", "recovered"}``.

    A cell counts as finished when its id is in ``out/results.jsonl``. If that line was produced with
    different settings (fingerprint) the run stops rather than mixing incomparable numbers.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    done = {r["cell"]: r for r in read_results(results_path)}
    cells = expand(cfg)
    if not cells:
        raise KbioxlmError(f"{cfg.source}: the matrix is empty (no dataset has files for the requested languages)")
    run_fn = run_fn or default_run_fn
    cached = P.CachedReader(reader)
    counts = {"cells": len(cells), "ran": 0, "skipped": 0, "recovered": 0}
    bar = progress_bar(total=len(cells), desc="benchmark", unit="cell", enabled=progress)
    try:
        for i, cell in enumerate(cells, 1):
            fp = fingerprint(cfg, cell)
            prefix = f"[{i}/{len(cells)}] {cell.id}"
            if cell.id in done:
                if done[cell.id].get("fingerprint") != fp:
                    raise KbioxlmError(
                        f"{results_path}: cell {cell.id} was run with other settings (model, data, protocol or "
                        "hyper-parameters changed); use a new --out folder or delete its line and folder"
                    )
                counts["skipped"] += 1
                log.info("%s: skipped (already in %s, f1=%.2f)", prefix, RESULTS, done[cell.id].get("f1") or 0.0)
                bar.update(1)
                continue
            rec = _recover(cfg, cell, out / "cells" / cell.folder, fp)
            if rec is not None:
                counts["recovered"] += 1
                log.info("%s: finished folder found, results line restored", prefix)
            else:
                bar.set_postfix_str(cell.id, refresh=True)
                rec = run_cell(cfg, cell, out, run_fn, cached, progress)
                counts["ran"] += 1
                log.info(
                    "%s: %s=%.2f (n_train=%s, n_test=%s) in %.0fs",
                    prefix,
                    rec.get("metric") or "f1",
                    rec["f1"],
                    rec["n_train"],
                    rec["n_test"],
                    rec["seconds"],
                )
            _append_result(results_path, rec)
            done[cell.id] = rec
            write_report(out, list(done.values()), cfg=cfg)
            bar.update(1)
    finally:
        bar.close()
    write_report(out, list(done.values()), cfg=cfg)
    return counts


def dry_run(cfg: BenchmarkConfig, reader: P.Reader | None = None) -> list[dict[str, Any]]:
    """Each cell's files and sizes without training (reads the data: checks paths and formats)."""
    cached = P.CachedReader(reader)
    rows = []
    for cell in expand(cfg):
        data = _cell_data(cfg, cell, cached)
        rows.append({"cell": cell.id, **data.manifest})
    return rows
