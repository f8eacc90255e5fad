"""Evaluation protocols: which files a benchmark cell trains, selects and tests on, and few-shot sampling.

The KBioXLM release names its folders after a *transfer direction* (``eng_to_zh``), not after the
language of every file in them (``eng_to_zh/test.txt`` is Chinese). Getting this wrong silently
turns a cross-lingual test into a monolingual one, so the registry below re-indexes every release
file by **language and split** (``files[lang][split]``); the protocols then only speak of languages:

* ``monolingual`` (language L): train ``files[L].train``, select on ``files[L].dev``, test ``files[L].test``;
* ``zero-shot`` (S→T): train ``files[S].train``, select on the *source* dev ``files[S].dev``, test
  ``files[T].test``;
* ``few-shot`` K (S→T): K target-language units sampled from ``files[T].train``, added to the source
  training set (``fewshot_mode="add"``, default) or used alone (``"alone"``); dev and test as zero-shot.

ADE has no dev set in the paper (Table 2 lists "-"); the release's ``dev.txt`` files hold the *test
sentences* (``eng_to_zh/dev.txt`` is byte-identical to ``zh_to_eng/test.txt``; ``zh_to_eng/dev.txt``
is a second translation of them). Selecting on them would select on the test set, so by default
(``dev_policy="heldout"``) such datasets get a dev set held out from their own training file (10%,
fixed seed, independent of the run seeds; ids saved). ``dev_policy="release"`` uses the release files
as the authors' scripts did.

Randomness: few-shot samples depend only on ``(dataset, target language, sampling seed)`` - never on
the training seed - and a K=10 sample is the prefix of the K=100 sample for the same seed (one seeded
shuffle, then the first K units), so the two few-shot columns differ only in K.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..errors import KbioxlmError
from ..schema import check_lang
from . import readers

LANG_LABELS = {"en": "EN", "zh": "CN"}
"""How the paper writes the languages in its tables (``CN`` for Chinese)."""

SPLITS = ("train", "dev", "test")
SETTINGS = ("monolingual", "zero-shot", "few-shot")
FEWSHOT_MODES = ("add", "alone")
DEV_POLICIES = ("heldout", "release")
TASK_TYPES = ("ner", "re", "dc")
UNITS = ("sentence", "abstract")

HELDOUT_FRACTION = 0.1
HELDOUT_SEED = 0
SUBSAMPLE_SEED = 0

Record = dict[str, Any]
Reader = Callable[[Path, str, str], list[Record]]
"""``reader(path, lang, task_type) -> records``; the default uses :mod:`kbioxlm.tasks.readers`."""


@dataclass(frozen=True)
class DatasetSpec:
    """One labelled dataset, its files indexed by language then split.

    ``unit`` is what a few-shot example is: a ``sentence`` (one record; ADE, GAD) or an ``abstract``
    (all records of one document; HoC rows are whole abstracts, sentence-level user sets are grouped
    by ``doc_id`` or by the id part before ``_``). ``dev_overlaps_test`` marks release dev files that
    hold the test items (ADE), which ``dev_policy="heldout"`` replaces.
    """

    name: str
    task: str
    files: dict[str, dict[str, Path | None]]
    unit: str = "sentence"
    display: str = ""
    dev_overlaps_test: bool = False

    @property
    def label(self) -> str:
        return self.display or self.name.upper()

    @property
    def langs(self) -> tuple[str, ...]:
        return tuple(self.files)

    def path(self, lang: str, split: str) -> Path | None:
        if lang not in self.files:
            raise KbioxlmError(f"dataset {self.name!r} has no {lang!r} files (has: {', '.join(self.files)})")
        return self.files[lang].get(split)


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The release folder: ``explicit``, else ``$KBIOXLM_DATA``, else ``../shared/data/kbioxlm-release``.

    Relative paths are taken from the current directory (run from the repository root).
    """
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("KBIOXLM_DATA")
    if env:
        return Path(env).expanduser()
    return Path("..") / "shared" / "data" / "kbioxlm-release"


def release_datasets(root: str | os.PathLike[str] | None = None) -> dict[str, DatasetSpec]:
    """The three released cross-lingual sets (BC5CDR is not in the release) re-indexed by language.

    See ``SOURCE.md`` of the release: ADE ``eng_to_zh/{train,dev}`` are EN and ``eng_to_zh/test`` is ZH;
    ``zh_to_eng/{train,dev}`` are ZH and ``zh_to_eng/test`` is EN. GAD/HoC ``*_hf_en_zh/{train,dev}``
    are EN, ``*_hf_zh_en/{train,dev}`` ZH, and ``test_en``/``test_zh`` are the same in both folders.
    """
    r = data_root(root)
    ade = r / "ner" / "ade"
    out = {
        "ade": DatasetSpec(
            name="ade",
            task="ner",
            display="ADE",
            unit="sentence",
            dev_overlaps_test=True,
            files={
                "en": {
                    "train": ade / "eng_to_zh" / "train.txt",
                    "dev": ade / "eng_to_zh" / "dev.txt",
                    "test": ade / "zh_to_eng" / "test.txt",
                },
                "zh": {
                    "train": ade / "zh_to_eng" / "train.txt",
                    "dev": ade / "zh_to_eng" / "dev.txt",
                    "test": ade / "eng_to_zh" / "test.txt",
                },
            },
        )
    }
    for name, task, unit in (("gad", "re", "sentence"), ("hoc", "dc", "abstract")):
        base = r / "seqcls"
        up = name.upper() if name == "gad" else "HoC"
        out[name] = DatasetSpec(
            name=name,
            task=task,
            display=name.upper() if name == "gad" else "HoC",
            unit=unit,
            files={
                "en": {
                    "train": base / f"{up}_hf_en_zh" / "train.json",
                    "dev": base / f"{up}_hf_en_zh" / "dev.json",
                    "test": base / f"{up}_hf_en_zh" / "test_en.json",
                },
                "zh": {
                    "train": base / f"{up}_hf_zh_en" / "train.json",
                    "dev": base / f"{up}_hf_zh_en" / "dev.json",
                    "test": base / f"{up}_hf_zh_en" / "test_zh.json",
                },
            },
        )
    return out


def user_dataset(spec: dict[str, Any], where_: str = "config") -> DatasetSpec:
    """A dataset given by paths in a benchmark config (see docs/benchmark.md)."""
    if not isinstance(spec, dict):
        raise KbioxlmError(f"{where_}: a task must be a release name (ade, gad, hoc) or a mapping")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise KbioxlmError(f"{where_}: task 'name' must be a word of letters, digits, '_', '-', '.'")
    task = spec.get("type", spec.get("task"))
    if task not in TASK_TYPES:
        raise KbioxlmError(f"{where_}: task {name!r}: 'type' must be one of {', '.join(TASK_TYPES)}, got {task!r}")
    unit = spec.get("unit", "abstract" if task == "dc" else "sentence")
    if unit not in UNITS:
        raise KbioxlmError(f"{where_}: task {name!r}: 'unit' must be one of {', '.join(UNITS)}")
    files = spec.get("files")
    if not isinstance(files, dict) or not files:
        raise KbioxlmError(f"{where_}: task {name!r}: 'files' must map a language to {{train, dev, test}} paths")
    out: dict[str, dict[str, Path | None]] = {}
    for lang, splits in files.items():
        try:
            check_lang(lang)
        except ValueError as exc:
            raise KbioxlmError(f"{where_}: task {name!r}: files: {exc}") from None
        if not isinstance(splits, dict):
            raise KbioxlmError(f"{where_}: task {name!r}: files.{lang} must map train/dev/test to paths")
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise KbioxlmError(
                f"{where_}: task {name!r}: files.{lang}: unknown split(s) {', '.join(sorted(map(str, unknown)))}"
            )
        out[str(lang)] = {s: (Path(str(splits[s])).expanduser() if splits.get(s) else None) for s in SPLITS}
    return DatasetSpec(
        name=name,
        task=task,
        files=out,
        unit=unit,
        display=str(spec.get("display", name)),
        dev_overlaps_test=bool(spec.get("dev_overlaps_test", False)),
    )


def parse_direction(text: str) -> tuple[str, str]:
    """``en-zh`` / ``en_zh`` / ``en_to_zh`` / ``eng_to_zh`` → ``("en", "zh")``."""
    alias = {"eng": "en", "cn": "zh", "chi": "zh", "zho": "zh"}
    m = re.fullmatch(r"([a-z]{2,3})(?:-|_|_to_|-to-)([a-z]{2,3})", str(text).strip().lower())
    if not m:
        raise KbioxlmError(f"direction {text!r}: expected SOURCE-TARGET such as en-zh")
    src, tgt = (alias.get(x, x) for x in m.groups())
    if src == tgt:
        raise KbioxlmError(f"direction {text!r}: source and target language are the same (use setting monolingual)")
    return src, tgt


def parse_setting(text: str) -> tuple[str, int]:
    """``monolingual`` → (monolingual, 0); ``zero-shot`` → (zero-shot, 0); ``few-shot-10`` → (few-shot, 10)."""
    t = str(text).strip().lower().replace("_", "-")
    if t in ("monolingual", "zero-shot"):
        return t, 0
    m = re.fullmatch(r"few-?shot-?(\d+)", t)
    if m and int(m.group(1)) > 0:
        return "few-shot", int(m.group(1))
    raise KbioxlmError(f"setting {text!r}: expected monolingual, zero-shot or few-shot-K (K > 0)")


def setting_name(setting: str, shots: int) -> str:
    return f"few-shot-{shots}" if setting == "few-shot" else setting


# ------------------------------------------------------------------------------------------- sampling


def unit_key(record: Record, unit: str) -> str:
    """The sampling unit a record belongs to: itself (sentence) or its abstract (document id)."""
    if unit == "sentence":
        return str(record["id"])
    doc = record.get("doc_id")
    return str(doc) if doc is not None else str(record["id"]).split("_")[0]


def group_units(records: Sequence[Record], unit: str) -> list[list[int]]:
    """Record indices grouped into sampling units, in first-appearance order.

    Sentence units are one record each even when ids repeat (GAD has duplicate sentences).
    """
    if unit == "sentence":
        return [[i] for i in range(len(records))]
    order: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        order.setdefault(unit_key(rec, unit), []).append(i)
    return list(order.values())


def shuffled_units(records: Sequence[Record], unit: str, seed_material: str) -> list[list[int]]:
    """One seeded permutation of the units. ``random.Random(str)`` is stable across runs and platforms
    (string seeds are hashed with SHA-512, not Python's randomised ``hash``)."""
    units = group_units(records, unit)
    random.Random(seed_material).shuffle(units)
    return units


def sample_fewshot(
    records: Sequence[Record], k: int, seed: int, unit: str = "sentence", *, dataset: str = "", lang: str = ""
) -> tuple[list[Record], list[str]]:
    """K units from ``records`` (the target-language train set) → (their records, their unit ids).

    Deterministic in ``(dataset, lang, seed)`` only; nested in K for a given seed.
    """
    units = shuffled_units(records, unit, f"fewshot|{dataset}|{lang}|{seed}")
    if k > len(units):
        raise KbioxlmError(
            f"few-shot K={k} but the {lang or 'target'} train set of {dataset or 'the dataset'} "
            f"has only {len(units)} {unit}s"
        )
    chosen = units[:k]
    picked = [records[i] for grp in chosen for i in grp]
    return picked, [unit_key(records[grp[0]], unit) for grp in chosen]


def split_heldout(
    records: Sequence[Record], unit: str, *, dataset: str, lang: str, fraction: float = HELDOUT_FRACTION
) -> tuple[list[Record], list[Record], list[str]]:
    """Hold ``fraction`` of the units of a train file out as dev → (train, dev, dev unit ids).

    The seed is fixed (``HELDOUT_SEED``) so every model and run seed sees the same split; records keep
    their file order on both sides.
    """
    units = shuffled_units(records, unit, f"heldout|{dataset}|{lang}|{HELDOUT_SEED}")
    n_dev = max(1, round(len(units) * fraction))
    if len(units) < 2:
        raise KbioxlmError(f"{dataset}: cannot hold a dev set out of a {lang} train set of {len(units)} {unit}(s)")
    dev_idx = sorted(i for grp in units[:n_dev] for i in grp)
    dev_set = set(dev_idx)
    train = [r for i, r in enumerate(records) if i not in dev_set]
    dev = [records[i] for i in dev_idx]
    return train, dev, [unit_key(records[grp[0]], unit) for grp in units[:n_dev]]


def subsample(records: Sequence[Record], n: int | None, unit: str, material: str) -> list[Record]:
    """At most ``n`` records (whole units), chosen by a fixed seed, kept in file order (quick runs)."""
    if n is None or len(records) <= n:
        return list(records)
    keep: list[int] = []
    for grp in shuffled_units(records, unit, f"subsample|{material}|{SUBSAMPLE_SEED}"):
        if len(keep) + len(grp) > n and keep:
            break
        keep.extend(grp)
    return [records[i] for i in sorted(keep)]


# ----------------------------------------------------------------------------------------- cell data


@dataclass
class CellData:
    """The records one benchmark cell uses and a manifest saying exactly where they came from."""

    train: list[Record]
    dev: list[Record]
    test: list[Record]
    manifest: dict[str, Any] = field(default_factory=dict)
    sampled_ids: dict[str, Any] = field(default_factory=dict)


def default_reader(path: Path, lang: str, task: str) -> list[Record]:
    if task == "ner":
        return cast("list[Record]", readers.read_ner(path, lang=lang))  # typed dicts, read as plain records
    return cast("list[Record]", readers.read_seqcls(path, lang=lang, task=task))


class CachedReader:
    """Reads each (file, language, task) once per benchmark run; cells share the parsed records."""

    def __init__(self, reader: Reader | None = None) -> None:
        self.reader = reader or default_reader
        self._cache: dict[tuple[str, str, str], list[Record]] = {}

    def __call__(self, path: Path, lang: str, task: str) -> list[Record]:
        key = (str(Path(path).resolve()), lang, task)
        if key not in self._cache:
            if not Path(path).is_file():
                raise KbioxlmError(f"{path}: no such file (check data_root / $KBIOXLM_DATA or the task's files)")
            self._cache[key] = self.reader(Path(path), lang, task)
        return self._cache[key]


def _need(ds: DatasetSpec, lang: str, split: str) -> Path:
    p = ds.path(lang, split)
    if p is None:
        raise KbioxlmError(f"dataset {ds.name!r}: no {lang} {split} file given")
    return p


def build_cell_data(
    ds: DatasetSpec,
    setting: str,
    source: str,
    target: str,
    *,
    shots: int = 0,
    sampling_seed: int = 0,
    fewshot_mode: str = "add",
    dev_policy: str = "heldout",
    max_train_examples: int | None = None,
    max_dev_examples: int | None = None,
    max_test_examples: int | None = None,
    reader: Reader | None = None,
) -> CellData:
    """Resolve one cell's train/dev/test records under a protocol.

    For ``monolingual`` pass ``source == target``. ``max_train_examples`` caps the *source* training
    set only (few-shot samples are always added in full), so a quick run keeps the protocol's shape.
    """
    if setting not in SETTINGS:
        raise KbioxlmError(f"unknown setting {setting!r}")
    if fewshot_mode not in FEWSHOT_MODES:
        raise KbioxlmError(f"fewshot_mode must be one of {', '.join(FEWSHOT_MODES)}, got {fewshot_mode!r}")
    if dev_policy not in DEV_POLICIES:
        raise KbioxlmError(f"dev_policy must be one of {', '.join(DEV_POLICIES)}, got {dev_policy!r}")
    if setting == "monolingual" and source != target:
        raise KbioxlmError("monolingual cells train and test in one language")
    if setting != "monolingual" and source == target:
        raise KbioxlmError(f"{setting} needs two different languages")
    if setting == "few-shot" and shots <= 0:
        raise KbioxlmError("few-shot needs K > 0")
    read = reader or default_reader
    task = ds.task
    train_path, test_path = _need(ds, source, "train"), _need(ds, target, "test")
    dev_path = ds.path(source, "dev")
    src_train = read(train_path, source, task)
    sampled: dict[str, Any] = {}
    heldout = dev_path is None or (ds.dev_overlaps_test and dev_policy == "heldout")
    if heldout:
        src_train, dev, dev_ids = split_heldout(src_train, ds.unit, dataset=ds.name, lang=source)
        sampled["heldout_dev"] = {"from": str(train_path), "lang": source, "unit": ds.unit, "ids": dev_ids}
        dev_from = f"{train_path} (held-out {HELDOUT_FRACTION:.0%} of the units, seed {HELDOUT_SEED})"
    else:
        assert dev_path is not None  # not held out: the dataset has a dev file
        dev = read(dev_path, source, task)
        dev_from = str(dev_path)
    src_train = subsample(src_train, max_train_examples, ds.unit, f"{ds.name}|{source}|train")
    dev = subsample(dev, max_dev_examples, ds.unit, f"{ds.name}|{source}|dev")
    test = subsample(read(test_path, target, task), max_test_examples, ds.unit, f"{ds.name}|{target}|test")
    train = src_train
    manifest: dict[str, Any] = {
        "dataset": ds.name,
        "task": task,
        "setting": setting,
        "shots": shots,
        "source_lang": source,
        "target_lang": target,
        "train_files": [str(train_path)],
        "dev_file": dev_from,
        "test_file": str(test_path),
    }
    if setting == "few-shot":
        tgt_path = _need(ds, target, "train")
        picked, ids = sample_fewshot(
            read(tgt_path, target, task), shots, sampling_seed, ds.unit, dataset=ds.name, lang=target
        )
        sampled["fewshot"] = {
            "from": str(tgt_path),
            "lang": target,
            "unit": ds.unit,
            "k": shots,
            "sampling_seed": sampling_seed,
            "mode": fewshot_mode,
            "ids": ids,
            "n_records": len(picked),
        }
        train = picked if fewshot_mode == "alone" else list(src_train) + list(picked)
        manifest["fewshot_mode"] = fewshot_mode
        manifest["fewshot_file"] = str(tgt_path)
        if fewshot_mode == "alone":
            manifest["train_files"] = [str(tgt_path)]
        else:
            manifest["train_files"].append(str(tgt_path))
    manifest.update(
        {
            "n_train": len(train),
            "n_dev": len(dev),
            "n_test": len(test),
            "max_train_examples": max_train_examples,
            "max_dev_examples": max_dev_examples,
            "max_test_examples": max_test_examples,
        }
    )
    return CellData(train=train, dev=dev, test=test, manifest=manifest, sampled_ids=sampled)
