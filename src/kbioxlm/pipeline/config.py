"""Reading a pipeline YAML: variables, defaults and validation.

A pipeline config names *inputs* (terminologies, raw corpora, aligned texts, a base model, a
benchmark config) and a few knobs; :mod:`kbioxlm.pipeline.plan` turns it into the stage commands.
Strings may use ``${name}`` variables:

* ``${shared}`` — ``--shared``, else ``$KBIOXLM_SHARED``, else ``../shared`` beside the project holding
  the config (:func:`kbioxlm.paths.default_shared`);
* ``${out}`` — the output folder (``--out``, else the config's ``out``), as an absolute path;
* ``${seed}`` — the config's ``seed``;
* any key of the config's ``vars:`` mapping (evaluated in order, may use the ones above);
* ``${env:NAME}`` — an environment variable.

Relative paths in the config are taken from the config file's folder (:mod:`kbioxlm.paths`), so a
pipeline does the same from any directory; every path of the parsed config is absolute.

Unknown variables and unknown keys are errors: a typo must not silently drop a terminology. Top-level
keys starting with ``x-`` are ignored (a place for YAML anchors such as ``x-arm: &arm {...}``).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..config import check_keys, read_mapping
from ..corpus.targets import parse_target_langs
from ..errors import KbioxlmError
from ..paths import VAR, substitute  # noqa: F401  (re-exported: the pipeline's variables)

TOP_KEYS = {
    "name",
    "out",
    "seed",
    "vars",
    "languages",
    "base_model",
    "kb",
    "documents",
    "pairs",
    "corpus",
    "vocab",
    "pretrain",
    "benchmark",
    "holdout",
    "probe",
}
KB_KINDS = {"obo", "icd10", "mine_pairs", "umls", "tsv"}
KB_FIELDS = {
    "obo": {"obo", "translations", "args"},
    "icd10": {"xml", "zh_categories", "zh_blocks", "args"},
    "mine_pairs": {"source", "target", "source_lang", "target_lang", "min_count", "args"},
    "umls": {"rrf_dir", "languages", "sources", "translations", "translation_lang", "args"},
    "tsv": {"concepts", "relations", "relation_names", "args"},
}
KB_REQUIRED = {
    "obo": ("obo",),
    "icd10": ("xml",),
    "mine_pairs": ("source", "target", "source_lang", "target_lang"),
    "umls": ("rrf_dir",),
    "tsv": (),
}
LEVELS = ("entity", "fact", "passage", "align")
DEFAULT_LEVELS = ("entity", "fact", "passage")  # `align` (synonym pairs, not in the paper) only when asked for
TRAIN_KEYS = ("entity", "fact", "passage", "align", "mono", "entity_mono")
STAGE_KEYS = {"name", "config", "model", "tokenizer", "train", "overrides", "launcher", "export_args"}
BENCH_KEYS = {"config", "compare", "overrides", "names", "extra_models", "dir"}
HOLDOUT_KEYS = {"fraction", "max_concepts", "seed", "langs", "args", "concepts"}
PROBE_KEYS = {"parallel", "max_terms", "max_sentences", "models", "langs", "compare", "args"}
RESERVED_STAGE_NAMES = {"base", "report"}  # `report` would clash with benchmark.report / probe.report


@dataclass
class PipelineConfig:
    """The parsed config with every variable substituted (plain dicts/lists/strings below)."""

    path: Path
    name: str
    out: Path
    seed: int
    languages: list[str]
    base_model: dict[str, str]
    kb: dict[str, list[dict[str, Any]]]
    documents: dict[str, Any]
    pairs: list[Any]
    corpus: dict[str, Any]
    vocab: dict[str, Any] | None
    pretrain: list[dict[str, Any]]
    benchmark: dict[str, Any] | None
    holdout: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    variables: dict[str, str] = field(default_factory=dict)
    anchor: Path | None = None  # fingerprints spell paths relative to this folder (kbioxlm.paths.anchor)


def _seed_values(value: Any, seed: int) -> Any:
    """``value`` with every string that is exactly ``${seed}`` replaced by the seed as an integer.

    Why: substitution gives text, and a setting that must be a number (a benchmark's ``seeds``, a
    pretraining override) would otherwise receive ``"13"``; inside longer text ``${seed}`` stays text.
    """
    if value == "${seed}":
        return seed
    if isinstance(value, list):
        return [_seed_values(v, seed) for v in value]
    if isinstance(value, dict):
        return {k: _seed_values(v, seed) for k, v in value.items()}
    return value


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, (dict, str)):
        return [value]
    raise KbioxlmError(f"{what}: expected a list, got {type(value).__name__}")


def _args(value: Any, what: str) -> list[str]:
    """Extra command-line arguments: a list of strings (numbers are turned into strings)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if not isinstance(value, list) or not all(
        isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value
    ):
        raise KbioxlmError(f"{what}: args must be a list of strings")
    return [str(a) for a in value]


def load_pipeline_config(
    path: str | os.PathLike[str], out: str | None = None, shared: str | None = None, seed: int | None = None
) -> PipelineConfig:
    """Read, substitute and validate a pipeline config; every problem is one ``file[:line]: reason``.

    ``seed`` replaces the config's ``seed`` (``kbioxlm pipeline --seed``): one repeat of the whole
    pipeline, into its own ``out``, as the demo runs one per seed.
    """
    p = Path(path)
    raw, lines = read_mapping(
        p, missing="no such pipeline config", not_mapping="a pipeline config must be a YAML mapping", allow_empty=False
    )
    src = str(p)
    # `x-<anything>` top-level keys are ignored: a place for YAML anchors shared by several entries
    # (e.g. `x-arm: &arm {...}` merged into each ablation arm's overrides with `<<: *arm`)
    raw = {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
    check_keys(raw, TOP_KEYS, src, lines)

    seed = raw.get("seed", 13) if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise KbioxlmError(f"{src}: seed must be an integer")
    raw = _seed_values(raw, seed)
    base_dir = paths.config_dir(p)
    variables: dict[str, str] = {
        "shared": str(paths.absolute(shared) if shared else paths.default_shared(p)),
        "seed": str(seed),
    }
    if out is not None:  # typed on the command line: from the current directory
        variables["out"] = str(paths.absolute(out))
    elif raw.get("out"):
        variables["out"] = str(paths.absolute(substitute(str(raw["out"]), variables, f"{src}: out"), base_dir))
    else:
        raise KbioxlmError(f"{src}: no output folder (set `out:` in the config or pass --out)")
    vars_raw = raw.get("vars") or {}
    if not isinstance(vars_raw, dict):
        raise KbioxlmError(f"{src}: vars must be a mapping of name: value")
    for k, v in vars_raw.items():
        if k in ("shared", "out", "seed") or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
            raise KbioxlmError(f"{src}: vars: {k!r} is reserved or not a valid name")
        variables[str(k)] = str(substitute(str(v), variables, f"{src}: vars.{k}"))
    data = substitute({k: v for k, v in raw.items() if k != "vars"}, variables, src)
    data = _resolve_paths(data, base_dir)

    languages = data.get("languages", ["en", "zh"])
    if not isinstance(languages, list) or len(languages) < 2 or not all(isinstance(x, str) for x in languages):
        raise KbioxlmError(f"{src}: languages must list at least two language codes, e.g. [en, zh]")

    base = data.get("base_model")
    if isinstance(base, str):
        base = {"path": base}
    base = check_keys(base, {"name", "path", "tokenizer"}, f"{src}: base_model")
    if not base.get("path"):
        raise KbioxlmError(f"{src}: base_model needs a path (hub name or folder)")
    base = {
        "name": str(base.get("name") or Path(str(base["path"])).name),
        "path": str(base["path"]),
        "tokenizer": str(base.get("tokenizer") or base["path"]),
    }

    kb_raw = check_keys(data.get("kb") or {}, KB_KINDS, f"{src}: kb")
    kb: dict[str, list[dict[str, Any]]] = {}
    for kind in ("umls", "obo", "icd10", "tsv", "mine_pairs"):
        entries = []
        for i, e in enumerate(_as_list(kb_raw.get(kind), f"{src}: kb.{kind}")):
            what = f"{src}: kb.{kind}[{i}]"
            check_keys(e, KB_FIELDS[kind], what)
            for req in KB_REQUIRED[kind]:
                if not e.get(req):
                    raise KbioxlmError(f"{what}: missing {req!r}")
            if kind == "tsv" and not any(e.get(k) for k in ("concepts", "relations", "relation_names")):
                raise KbioxlmError(f"{what}: give concepts, relations and/or relation_names")
            e = dict(e)
            e["args"] = _args(e.get("args"), what)
            entries.append(e)
        kb[kind] = entries

    documents = data.get("documents") or {}
    check_keys(documents, set(languages) | {"max_per_lang", "dedup"}, f"{src}: documents")
    pairs = _as_list(data.get("pairs"), f"{src}: pairs")

    corpus = check_keys(
        data.get("corpus") or {}, {"levels", "directions", "args", "align_mentions", "target_langs"}, f"{src}: corpus"
    )
    levels = corpus.get("levels", list(DEFAULT_LEVELS))
    if not isinstance(levels, list) or any(lv not in LEVELS for lv in levels):
        raise KbioxlmError(f"{src}: corpus.levels must be a subset of {list(LEVELS)}")
    align_mentions = corpus.get("align_mentions", False)
    if not isinstance(align_mentions, bool):
        raise KbioxlmError(f"{src}: corpus.align_mentions must be true or false")
    if align_mentions and not ("align" in levels and "entity" in levels):
        raise KbioxlmError(f"{src}: corpus.align_mentions needs both the align and the entity level in corpus.levels")
    corpus_args = check_keys(corpus.get("args") or {}, set(LEVELS), f"{src}: corpus.args")
    corpus = {
        "levels": levels,
        "directions": corpus.get("directions"),
        "args": {lv: _args(corpus_args.get(lv), f"{src}: corpus.args.{lv}") for lv in LEVELS},
        "align_mentions": align_mentions,
        "target_langs": _target_langs(corpus.get("target_langs"), corpus.get("directions"), languages, src),
    }

    holdout = _holdout(data.get("holdout"), seed, languages, src)

    vocab = data.get("vocab")
    if vocab is not None and vocab is not False:
        if vocab is True:
            vocab = {}
        check_keys(vocab, {"enabled", "args", "tokenizer"}, f"{src}: vocab")
        vocab = (
            None
            if vocab.get("enabled") is False
            else {"args": _args(vocab.get("args"), f"{src}: vocab"), "tokenizer": vocab.get("tokenizer")}
        )
    else:
        vocab = None

    stages = []
    names = set()
    for i, st in enumerate(_as_list(data.get("pretrain"), f"{src}: pretrain")):
        what = f"{src}: pretrain[{i}]"
        check_keys(st, STAGE_KEYS, what)
        name = str(st.get("name") or f"stage{i + 1}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in names or name in RESERVED_STAGE_NAMES:
            raise KbioxlmError(f"{what}: name {name!r} must be unique, not 'base' or 'report', letters/digits/-/_ only")
        names.add(name)
        if not st.get("config"):
            raise KbioxlmError(f"{what}: missing 'config' (a pretraining YAML, e.g. configs/pretrain-stage2.yaml)")
        train = st.get("train", ["entity", "fact", "passage", "mono"])
        if not isinstance(train, list) or not train:
            raise KbioxlmError(f"{what}: train must list corpora ({', '.join(TRAIN_KEYS)}) or file paths")
        overrides = st.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise KbioxlmError(f"{what}: overrides must be a mapping key: value")
        launcher = _args(st.get("launcher"), what) if st.get("launcher") else []
        stages.append(
            {
                "name": name,
                "config": str(st["config"]),
                "model": st.get("model"),
                "tokenizer": st.get("tokenizer"),
                "train": [str(t) for t in train],
                "overrides": overrides,
                "launcher": launcher,
                "export_args": _args(st.get("export_args"), what),
            }
        )

    bench = data.get("benchmark")
    if bench is not None:
        check_keys(bench, BENCH_KEYS, f"{src}: benchmark")
        if not bench.get("config"):
            raise KbioxlmError(f"{src}: benchmark needs 'config' (e.g. configs/benchmark-small-cpu.yaml)")
        compare = bench.get("compare") or (["base"] + ([stages[-1]["name"]] if stages else []))
        for c in compare:
            if c != "base" and c not in names:
                raise KbioxlmError(f"{src}: benchmark.compare: {c!r} is neither 'base' nor a pretraining stage")
        overrides = bench.get("overrides") or {}
        if not isinstance(overrides, dict) or "models" in overrides:
            raise KbioxlmError(
                f"{src}: benchmark.overrides must be a mapping (without 'models': the pipeline sets them)"
            )
        labels = bench.get("names") or {}
        if not isinstance(labels, dict):
            raise KbioxlmError(f"{src}: benchmark.names must map base/stage names to table labels")
        extra_models = []
        for j, m in enumerate(_as_list(bench.get("extra_models"), f"{src}: benchmark.extra_models")):
            if isinstance(m, str):
                m = {"path": m}
            check_keys(m, {"name", "path", "tokenizer"}, f"{src}: benchmark.extra_models[{j}]")
            if not m.get("path"):
                raise KbioxlmError(f"{src}: benchmark.extra_models[{j}] needs a path")
            extra_models.append({k: str(v) for k, v in m.items() if v})
        bench = {
            "config": str(bench["config"]),
            "compare": [str(c) for c in compare],
            "overrides": overrides,
            "names": {str(k): str(v) for k, v in labels.items()},
            "extra_models": extra_models,
            "dir": str(bench.get("dir") or "benchmark"),
        }

    probe = _probe(data.get("probe"), languages, [st["name"] for st in stages], src)

    return PipelineConfig(
        path=p,
        name=str(data.get("name") or p.stem),
        out=Path(variables["out"]),
        seed=seed,
        languages=languages,
        base_model=base,
        kb=kb,
        documents=documents,
        pairs=pairs,
        corpus=corpus,
        vocab=vocab,
        pretrain=stages,
        benchmark=bench,
        holdout=holdout,
        probe=probe,
        variables=variables,
        anchor=paths.anchor(p),
    )


# File fields of the KB importers (the others are languages, sources, counts and flags).
KB_FILE_FIELDS = {
    "obo": ("obo", "translations"),
    "icd10": ("xml", "zh_categories", "zh_blocks"),
    "mine_pairs": ("source", "target"),
    "umls": ("rrf_dir", "translations"),
    "tsv": ("concepts", "relations", "relation_names"),
}


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Every path of a substituted config taken from the config's folder (absolute afterwards).

    Values of the wrong shape are left alone: the checks below report them with their key.
    """

    def files(v: Any) -> Any:
        return [paths.resolve_file(x, base) for x in v] if isinstance(v, list) else paths.resolve_file(v, base)

    d = dict(data)
    bm = d.get("base_model")
    if isinstance(bm, str):
        d["base_model"] = paths.resolve_model(bm, base)
    elif isinstance(bm, dict):
        d["base_model"] = {**bm, **{k: paths.resolve_model(bm[k], base) for k in ("path", "tokenizer") if bm.get(k)}}
    kb = d.get("kb")
    if isinstance(kb, dict):
        kb = dict(kb)
        for kind, fields in KB_FILE_FIELDS.items():
            entries = kb.get(kind)
            items = entries if isinstance(entries, list) else [entries] if isinstance(entries, dict) else None
            if items is not None:
                kb[kind] = [
                    {**e, **{f: files(e[f]) for f in fields if e.get(f)}} if isinstance(e, dict) else e for e in items
                ]
        d["kb"] = kb
    docs = d.get("documents")
    if isinstance(docs, dict):

        def doc(e: Any) -> Any:
            if isinstance(e, dict) and e.get("path"):
                return {**e, "path": paths.resolve_file(e["path"], base)}
            return paths.resolve_file(e, base)

        d["documents"] = {
            k: ([doc(e) for e in v] if isinstance(v, list) else doc(v)) if k not in ("max_per_lang", "dedup") else v
            for k, v in docs.items()
        }
    pairs = d.get("pairs")
    if pairs is not None:
        keep = {"format", "per_article", "args"}
        d["pairs"] = [
            (
                {k: (v if k in keep else paths.resolve_file(v, base)) for k, v in e.items()}
                if isinstance(e, dict)
                else paths.resolve_file(e, base)
            )
            for e in (pairs if isinstance(pairs, list) else [pairs])
        ]
    vocab = d.get("vocab")
    if isinstance(vocab, dict) and vocab.get("tokenizer"):
        d["vocab"] = {**vocab, "tokenizer": paths.resolve_model(vocab["tokenizer"], base)}
    stages = d.get("pretrain")
    if isinstance(stages, list):
        names = {str(st.get("name")) for st in stages if isinstance(st, dict)} | {"base"}
        out = []
        for st in stages:
            if isinstance(st, dict):
                st = dict(st)
                if st.get("config"):
                    st["config"] = paths.resolve_file(str(st["config"]), base)
                if isinstance(st.get("model"), str) and st["model"] not in names:
                    st["model"] = paths.resolve_model(st["model"], base)
                if st.get("tokenizer"):
                    st["tokenizer"] = paths.resolve_model(st["tokenizer"], base)
                if isinstance(st.get("train"), list):
                    st["train"] = [t if t in TRAIN_KEYS else paths.resolve_file(str(t), base) for t in st["train"]]
                if isinstance(st.get("overrides"), dict):
                    st["overrides"] = paths.resolve_pretrain_paths(dict(st["overrides"]), base)
            out.append(st)
        d["pretrain"] = out
    bench = d.get("benchmark")
    if isinstance(bench, dict):
        bench = dict(bench)
        if bench.get("config"):
            bench["config"] = paths.resolve_file(str(bench["config"]), base)
        if isinstance(bench.get("extra_models"), list):
            bench["extra_models"] = [
                {**m, **{k: paths.resolve_model(m[k], base) for k in ("path", "tokenizer") if m.get(k)}}
                if isinstance(m, dict)
                else paths.resolve_model(m, base)
                for m in bench["extra_models"]
            ]
        if isinstance(bench.get("overrides"), dict):
            bench["overrides"] = paths.resolve_benchmark_paths(bench["overrides"], base)
        d["benchmark"] = bench
    holdout = d.get("holdout")
    if isinstance(holdout, dict) and isinstance(holdout.get("concepts"), str):
        d["holdout"] = {**holdout, "concepts": paths.resolve_file(holdout["concepts"], base)}
    probe = d.get("probe")
    if isinstance(probe, dict):
        for key in ("parallel", "compare"):
            if isinstance(probe.get(key), dict):
                probe = {
                    **probe,
                    key: {k: paths.resolve_file(v, base) if isinstance(v, str) else v for k, v in probe[key].items()},
                }
        d["probe"] = probe
    return d


def _int_or_none(value: Any, what: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise KbioxlmError(f"{what} must be an integer >= {minimum} (or null)")
    return value


def _holdout(raw: Any, seed: int, languages: list[str], src: str) -> dict[str, Any] | None:
    """``holdout:`` → the settings of ``kb split`` (``None`` when absent or false; ``true`` = defaults),
    or ``{"concepts": FILE}``: a given list of concept ids held out as it is (no ``kb split`` step)."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    check_keys(raw, HOLDOUT_KEYS, f"{src}: holdout")
    if raw.get("concepts") is not None:  # a given list: no draw
        drawn = sorted({"fraction", "max_concepts", "seed", "langs", "args"} & set(raw))
        if drawn:
            raise KbioxlmError(f"{src}: holdout.concepts is a given list; {', '.join(drawn)} only set a draw")
        return {"concepts": str(raw["concepts"])}
    fraction = raw.get("fraction", 0.1)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise KbioxlmError(f"{src}: holdout.fraction must be a number in (0, 1], e.g. 0.1")
    max_concepts = _int_or_none(raw.get("max_concepts"), f"{src}: holdout.max_concepts", 1)
    hseed = _int_or_none(raw.get("seed"), f"{src}: holdout.seed", 0)
    langs = raw.get("langs")
    if langs is None:
        langs = list(languages)
    elif isinstance(langs, str):
        langs = [x.strip() for x in langs.split(",") if x.strip()]
    if not isinstance(langs, list) or not langs or any(not isinstance(x, str) or x not in languages for x in langs):
        raise KbioxlmError(f"{src}: holdout.langs must list language codes of `languages` ({', '.join(languages)})")
    return {
        "fraction": float(fraction),
        "max_concepts": max_concepts,
        "seed": seed if hseed is None else hseed,
        "langs": langs,
        "args": _args(raw.get("args"), f"{src}: holdout"),
    }


def _target_langs(raw: Any, directions: Any, languages: list[str], src: str) -> list[tuple[str, float]] | None:
    """``corpus.target_langs`` (``{zh: 0.5, es: 0.25}``, ``"zh:0.5,es:0.25"`` or ``[zh, es]``) → the
    ``(lang, weight)`` pairs ``languages[0]``'s documents are switched into (``None``: not given)."""
    if raw is None:
        return None
    what = f"{src}: corpus.target_langs"
    pairs = parse_target_langs(raw, what)
    bad = [lang for lang, _w in pairs if lang not in languages[1:]]
    if bad:
        raise KbioxlmError(
            f"{what}: {', '.join(bad)} must be languages of `languages` other than the first "
            f"({', '.join(languages[1:])})"
        )
    if directions is not None:
        raise KbioxlmError(
            f"{what}: give either corpus.directions or corpus.target_langs (it sets the directions: "
            f"{languages[0]} documents into the weighted targets, other documents into {languages[0]})"
        )
    return list(pairs)


def _probe(raw: Any, languages: list[str], stage_names: list[str], src: str) -> dict[str, Any] | None:
    """``probe:`` → one ``kbioxlm probe`` run per model (``None`` when absent or false; ``true`` = defaults)."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    check_keys(raw, PROBE_KEYS, f"{src}: probe")
    a, b = languages[0], languages[1]
    langs = raw.get("langs")
    if langs is not None:  # probe EN<->X for several X: one probe per model and X
        if isinstance(langs, str):
            langs = [x.strip() for x in langs.split(",") if x.strip()]
        if (
            not isinstance(langs, list)
            or not langs
            or len(set(langs)) != len(langs)
            or any(not isinstance(x, str) or x not in languages[1:] for x in langs)
        ):
            raise KbioxlmError(
                f"{src}: probe.langs must list languages of `languages` other than the first, "
                f"each once ({', '.join(languages[1:])})"
            )
    parallel = raw.get("parallel")
    if parallel is not None:
        others = set(langs) if langs is not None else {b}
        check_keys(parallel, {a} | others, f"{src}: probe.parallel")
        if not parallel.get(a) or not any(parallel.get(x) for x in others):
            raise KbioxlmError(
                f"{src}: probe.parallel needs line-aligned files for both {a!r} and "
                + (f"{b!r}" if langs is None else "a language of probe.langs")
            )
        parallel = {k: str(v) for k, v in parallel.items() if v}
    max_terms = _int_or_none(raw.get("max_terms", 2000), f"{src}: probe.max_terms", 1)
    max_sentences = _int_or_none(raw.get("max_sentences", 1000), f"{src}: probe.max_sentences", 1)
    models = raw.get("models")
    if models is None:
        models = ["base", *stage_names]
    models = _as_list(models, f"{src}: probe.models")
    for m in models:
        if m != "base" and m not in stage_names:
            raise KbioxlmError(f"{src}: probe.models: {m!r} is neither 'base' nor a pretraining stage")
    if not models or len(set(map(str, models))) != len(models):
        raise KbioxlmError(f"{src}: probe.models must list each model once ('base' and/or stage names)")
    compare = raw.get("compare") or {}
    # Models of other runs shown beside this run's (their probe.json; the report checks they asked the same questions).
    if not isinstance(compare, dict) or any(
        not isinstance(k, str) or not k or not isinstance(v, str) or not v for k, v in compare.items()
    ):
        raise KbioxlmError(
            f"{src}: probe.compare maps a label to another run's probe.json, e.g. "
            "{{en-es: ../runs/e2e-en-es-small-cpu/probe/align/probe.json}}"
        )
    clash = sorted(set(compare) & ({"base", *map(str, models)}))
    if clash:
        raise KbioxlmError(f"{src}: probe.compare label {clash[0]!r} is also a model of this run; pick another label")
    return {
        "parallel": parallel,
        "compare": dict(compare),
        "max_terms": 2000 if max_terms is None else max_terms,
        "max_sentences": 1000 if max_sentences is None else max_sentences,
        "models": [str(m) for m in models],
        "langs": langs,
        "args": _args(raw.get("args"), f"{src}: probe"),
    }
