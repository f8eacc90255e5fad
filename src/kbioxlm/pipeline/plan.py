"""A pipeline config → the ordered list of steps (stage commands) it stands for.

Every step is either one documented ``kbioxlm`` command (run in this process by the stage that owns
it, :func:`.stages.run_stage`, or through a launcher such as ``accelerate launch`` in a subprocess)
or one of the pipeline's own small conversions (raw corpora → one Document JSONL per language, and
both languages in one file). Each step declares its input and output paths; the runner uses them to
skip finished steps and to redo a step when anything it reads has changed.

Step names (``--only`` / ``--force`` take names or dotted prefixes such as ``kb`` or ``corpus.fact``):

    kb.umls[.N]  kb.obo.<stem>  kb.icd10[.N]  kb.tsv.<stem>  kb.pairs.<src>-<tgt>  kb.stats
    kb.split  (held-out concepts, with ``holdout:``; none with ``holdout.concepts``, a given list)
    docs.<lang>  docs.<a>+<b>  (the documents of both languages in one file)
    corpus.entity.<a>+<b>  corpus.fact.<src>-<tgt>  corpus.align.<a>-<b>  corpus.passage.<source>
    (with ``corpus.target_langs``: corpus.entity.<a>-<x>+<y>+...  corpus.fact.<a>-<x>+<y>+...  corpus.align.<a>-<x>+<y>+...)
    vocab
    pretrain.<stage>  export.<stage>
    probe.<model>  probe.report  (with ``probe:``; with ``probe.langs``: probe.<x>.<model>  probe.<x>.report  probe.report)
    benchmark.<model>  benchmark.report
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from ..corpus.targets import format_target_langs
from ..errors import KbioxlmError
from ..io import atomic_write, write_json
from ..paths import display
from ..tasks.benchmark import read_config_file
from . import sources
from .config import LEVELS, PipelineConfig
from .probe_report import write_multi_probe_report, write_probe_report


@dataclass
class Step:
    """One unit of work with declared inputs/outputs (paths) and how to run it."""

    name: str
    title: str
    argv: list[str] | None = None  # a kbioxlm command line (without the program name)
    action: Callable[[], dict[str, Any]] | None = None  # the pipeline's own conversions
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    launcher: list[str] = field(default_factory=list)  # run `launcher + argv` in a subprocess
    stdout_to: Path | None = None  # also save what the command prints (kb stats --json)
    clean: list[Path] = field(default_factory=list)  # removed before a fresh (non-resumed) run
    generated: dict[Path, str] = field(default_factory=dict)  # files written right before running
    prepare: Callable[[], None] | None = None  # extra work right before the command runs
    can_resume: Callable[[], bool] | None = None  # an interrupted run left something to resume from
    params: Any = None  # settings of an `action` step (part of its fingerprint, like argv)
    note: str = ""

    def command(self, pipeline_cmd: str = "kbioxlm pipeline --config CONFIG") -> str:
        """The shell line a user can copy to do this step by hand (the pipeline's own conversions
        are run by the pipeline command restricted to that step)."""
        if self.argv is not None:
            prog = shlex.join(self.launcher) if self.launcher else "kbioxlm"
            return display(f"{prog} {shlex.join(self.argv)}")
        return f"{pipeline_cmd} --only {self.name}"


def _yaml_value(v: Any) -> str:
    """A value as the ``key=value`` override text ``kbioxlm pretrain`` parses back (YAML)."""
    if isinstance(v, str):
        try:
            if yaml.safe_load(v) == v:
                return v
        except yaml.YAMLError:
            pass
    return json.dumps(v, ensure_ascii=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}.{i}", i + 1
    taken.add(out)
    return out


def _has_checkpoint(run_dir: Path) -> bool:
    """An interrupted pretraining run in ``run_dir`` left a checkpoint to resume from."""
    return any((c / "trainer_state.json").is_file() for c in (run_dir / "checkpoints").glob("checkpoint-*"))


def _local(path: str) -> list[Path]:
    """``path`` as an input when it exists locally (a hub model name is no file to watch)."""
    p = Path(path)
    return [p] if p.exists() else []


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def build_plan(cfg: PipelineConfig) -> list[Step]:
    out = cfg.out
    steps: list[Step] = []
    taken: set[str] = set()
    kb = out / "kb" / "kb.sqlite"
    seed = str(cfg.seed)
    langs = cfg.languages

    # ---------------------------------------------------------------------------- knowledge base
    def kb_step(label: str, argv: list[str], inputs: list[Path], title: str) -> None:
        steps.append(
            Step(_unique(f"kb.{label}", taken), title, argv=argv + ["--kb", str(kb)], inputs=inputs, outputs=[kb])
        )

    for e in cfg.kb["umls"]:
        argv = ["kb", "import", "umls", "--rrf-dir", e["rrf_dir"]]
        inputs = [Path(e["rrf_dir"])]
        for key, flag in (("languages", "--languages"), ("sources", "--sources")):
            if e.get(key):
                argv += [flag, ",".join(e[key]) if isinstance(e[key], list) else str(e[key])]
        if e.get("translations"):
            argv += ["--translations", e["translations"]]
            inputs.append(Path(e["translations"]))
        if e.get("translation_lang"):
            argv += ["--translation-lang", str(e["translation_lang"])]
        kb_step("umls", argv + e["args"], inputs, "import UMLS (RRF) into the knowledge base")
    for e in cfg.kb["obo"]:
        trans = e.get("translations") or []
        trans = [trans] if isinstance(trans, str) else list(trans)
        argv = ["kb", "import", "obo", "--obo", e["obo"]] + (["--translations", *trans] if trans else [])
        kb_step(
            f"obo.{_slug(Path(e['obo']).stem)}",
            argv + e["args"],
            [Path(e["obo"]), *map(Path, trans)],
            "import an OBO ontology + Babelon translations",
        )
    for e in cfg.kb["icd10"]:
        argv = ["kb", "import", "icd10", "--xml", e["xml"]]
        inputs = [Path(e["xml"])]
        for key, flag in (("zh_categories", "--zh-categories"), ("zh_blocks", "--zh-blocks")):
            if e.get(key):
                argv += [flag, e[key]]
                inputs.append(Path(e[key]))
        kb_step("icd10", argv + e["args"], inputs, "import ICD-10 (English XML + Chinese names)")
    for e in cfg.kb["tsv"]:
        argv, inputs = ["kb", "import", "tsv"], []
        for key, flag in (
            ("concepts", "--concepts"),
            ("relations", "--relations"),
            ("relation_names", "--relation-names"),
        ):
            if e.get(key):
                argv += [flag, e[key]]
                inputs.append(Path(e[key]))
        kb_step(f"tsv.{_slug(inputs[0].stem)}", argv + e["args"], inputs, "import concepts/relations (TSV/JSONL)")
    for e in cfg.kb["mine_pairs"]:
        argv = [
            "kb",
            "mine-pairs",
            "--source",
            e["source"],
            "--target",
            e["target"],
            "--lang",
            str(e["source_lang"]),
            "--target-lang",
            str(e["target_lang"]),
        ]
        if e.get("min_count") is not None:
            argv += ["--min-count", str(e["min_count"])]
        kb_step(
            f"pairs.{e['source_lang']}-{e['target_lang']}",
            argv + e["args"],
            [Path(e["source"]), Path(e["target"])],
            "mine bilingual entity pairs from parallel NER files",
        )
    have_kb = any(cfg.kb[k] for k in cfg.kb)
    kb_steps = [st for st in steps if st.outputs == [kb]]
    if kb_steps:
        # The KB is one file written by several imports. Each import replaces only its own source,
        # so a removed or changed entry could leave stale rows behind: every import carries the
        # whole recipe, and the first one starts from an empty file when the recipe changed.
        recipe = [st.argv for st in kb_steps]
        for kb_import in kb_steps:
            kb_import.params = {"kb_recipe": recipe}
        kb_steps[0].clean = [kb, *(kb.with_name(kb.name + x) for x in ("-wal", "-shm", "-journal"))]
    if have_kb:
        stats = out / "kb" / "stats.json"
        tok = cfg.base_model["tokenizer"]  # its unknown-piece rate per language: does the model cover them?
        steps.append(
            Step(
                _unique("kb.stats", taken),
                "knowledge-base statistics",
                argv=["kb", "stats", "--kb", str(kb), "--json", "--tokenizer", tok],
                inputs=[kb, *_local(tok)],
                outputs=[stats],
                stdout_to=stats,
            )
        )
    heldout: Path | None = None
    if cfg.holdout is not None and not have_kb:
        raise KbioxlmError(f"{cfg.path}: holdout needs a knowledge base (kb: ...) to split")
    if cfg.holdout is not None and "concepts" in cfg.holdout:  # a given list: an input, no step
        heldout = Path(cfg.holdout["concepts"])
    elif cfg.holdout is not None:
        ho = cfg.holdout
        heldout = out / "kb" / "heldout.txt"
        argv = [
            "kb",
            "split",
            "--kb",
            str(kb),
            "--holdout-fraction",
            str(ho["fraction"]),
            "--seed",
            str(ho["seed"]),
            "--langs",
            ",".join(ho["langs"]),
            "--out",
            str(heldout),
        ]
        if ho["max_concepts"] is not None:
            argv += ["--max-concepts", str(ho["max_concepts"])]
        steps.append(
            Step(
                _unique("kb.split", taken),
                "hold concepts out of every KB-derived corpus (for the probe)",
                argv=argv + ho["args"],
                inputs=[kb],
                outputs=[heldout],
            )
        )
    # the KB-derived corpora (entity, fact, align) leave the held-out concepts out
    exclude = ["--exclude-concepts", str(heldout)] if heldout is not None else []
    exclude_inputs = [heldout] if heldout is not None else []

    # ---------------------------------------------------------------------------- documents
    docs: dict[str, Path] = {}
    max_per_lang = cfg.documents.get("max_per_lang")
    dedup = bool(cfg.documents.get("dedup", True))
    for lang in langs:
        spec = cfg.documents.get(lang)
        if not spec:
            continue
        path = out / "docs" / f"{lang}.jsonl"
        docs[lang] = path
        summary = out / "docs" / f"{lang}.summary.json"

        def convert(spec: Any = spec, lang: str = lang, path: Path = path, summary: Path = summary) -> dict[str, Any]:
            s = sources.build_documents(spec, lang, path, max_docs=max_per_lang, dedup=dedup)
            write_json(summary, s)
            return s

        steps.append(
            Step(
                _unique(f"docs.{lang}", taken),
                f"{lang} monolingual text → Document JSONL",
                action=convert,
                inputs=sources.document_inputs(spec, f"documents.{lang}"),
                outputs=[path, summary],
                params={"spec": spec, "max_per_lang": max_per_lang, "dedup": dedup},
            )
        )
    # ---------------------------------------------------------------------------- corpora
    corpus_files: dict[str, list[Path]] = {lv: [] for lv in LEVELS}
    directions = cfg.corpus["directions"]
    multi = cfg.corpus["target_langs"]  # languages[0]'s documents into several weighted languages
    if multi:
        src0 = langs[0]
        tlangs = [lang for lang, _w in multi]
        tag = "+".join(tlangs)  # in step and file names: corpus.entity.en-zh+es+fr+de
        if src0 not in docs and ("entity" in cfg.corpus["levels"] or "fact" in cfg.corpus["levels"]):
            raise KbioxlmError(f"{cfg.path}: corpus.target_langs switches {src0} documents, but documents lists none")
        stray = [lang for lang in docs if lang != src0 and lang not in tlangs]
        if stray:
            raise KbioxlmError(
                f"{cfg.path}: corpus.target_langs: documents in {', '.join(stray)} have no direction "
                f"(list the language in corpus.target_langs: its documents are switched into {src0})"
            )
        others = [lang for lang in docs if lang != src0]
        directions = []  # the entity, fact and align steps below handle target_langs themselves
    elif directions is None:  # each text language into the first other language (en→zh, zh→en)
        directions = [f"{s}-{next(t for t in langs if t != s)}" for s in langs if s in docs]
    pairs_dirs = []
    for d in directions:
        s, _, t = str(d).partition("-")
        if s not in docs:
            raise KbioxlmError(f"{cfg.path}: corpus direction {d}: no documents for {s!r}")
        if t not in langs:
            raise KbioxlmError(f"{cfg.path}: corpus direction {d}: {t!r} is not in languages")
        pairs_dirs.append((s, t))
    if ("entity" in cfg.corpus["levels"] or "fact" in cfg.corpus["levels"]) and docs and not have_kb:
        raise KbioxlmError(f"{cfg.path}: the entity and fact levels need a knowledge base (kb: ...)")
    if "align" in cfg.corpus["levels"] and not have_kb:
        raise KbioxlmError(f"{cfg.path}: the align level needs a knowledge base (kb: ...)")

    def corpus_step(
        level: str,
        name: str,
        title: str,
        src_file: Path,
        s: str,
        t: str,
        path: Path,
        target_flag: str = "--target-lang",
    ) -> None:
        corpus_files[level].append(path)
        steps.append(
            Step(
                _unique(name, taken),
                title,
                argv=[
                    "corpus",
                    level,
                    "--kb",
                    str(kb),
                    "--input",
                    str(src_file),
                    "--lang",
                    s,
                    target_flag,
                    t,
                    "--out",
                    str(path),
                    "--seed",
                    seed,
                    *exclude,
                    *cfg.corpus["args"][level],
                ],
                inputs=[kb, src_file, *exclude_inputs],
                outputs=[path],
            )
        )

    def mixed_docs(group: list[str]) -> Path:
        """A step writing the documents of ``group`` into one file (one balanced switching run)."""
        mixed = out / "docs" / f"{'+'.join(group)}.jsonl"

        def concat(group: tuple[str, ...] = tuple(group), mixed: Path = mixed) -> dict[str, Any]:
            n = 0
            with atomic_write(mixed) as fh:
                for lang in group:
                    with open(docs[lang], encoding="utf-8") as src:
                        for line in src:
                            fh.write(line)
                            n += 1
            return {"documents": n, "languages": list(group)}

        steps.append(
            Step(
                _unique(f"docs.{'+'.join(group)}", taken),
                f"{', '.join(group[:-1])} and {group[-1]} documents in one file (balanced switching)",
                action=concat,
                inputs=[docs[lang] for lang in group],
                outputs=[mixed],
                params={"langs": list(group)},
            )
        )
        return mixed

    if "entity" in cfg.corpus["levels"] and multi:
        # Each switched entity of a languages[0] document takes a language drawn by weight; documents
        # in target languages (if any) switch into languages[0], in the same balanced run.
        corpus_step(
            "entity",
            f"corpus.entity.{src0}-{tag}",
            f"entity-level corpus {src0}→{tag} (weighted target languages{', balanced' if others else ''})",
            mixed_docs([src0, *others]) if others else docs[src0],
            src0,
            format_target_langs(multi),
            out / "corpus" / f"entity.{src0}-{tag}.jsonl",
            target_flag="--target-langs",
        )
    if "entity" in cfg.corpus["levels"]:
        both = [(s, t) for s, t in pairs_dirs if (t, s) in pairs_dirs][:1]
        if both:
            # One run over both languages: the builder then balances the switches into each
            # language (docs/design.md, "Corpus semantics": "over the corpus the number of switches into
            # each language is balanced"), which two separate runs do not do on their own.
            a, b = both[0]
            corpus_step(
                "entity",
                f"corpus.entity.{a}+{b}",
                f"entity-level corpus {a}<->{b} (code-switching, balanced)",
                mixed_docs([a, b]),
                a,
                b,
                out / "corpus" / f"entity.{a}+{b}.jsonl",
            )
        for s, t in pairs_dirs:
            if both and (s, t) in (both[0], both[0][::-1]):
                continue
            corpus_step(
                "entity",
                f"corpus.entity.{s}-{t}",
                f"entity-level corpus {s}→{t}",
                docs[s],
                s,
                t,
                out / "corpus" / f"entity.{s}-{t}.jsonl",
            )
    if "fact" in cfg.corpus["levels"] and multi:
        corpus_step(
            "fact",
            f"corpus.fact.{src0}-{tag}",
            f"fact-level corpus {src0}→{tag} (weighted target languages)",
            docs[src0],
            src0,
            format_target_langs(multi),
            out / "corpus" / f"fact.{src0}-{tag}.jsonl",
            target_flag="--target-langs",
        )
        for s in others:
            corpus_step(
                "fact",
                f"corpus.fact.{s}-{src0}",
                f"fact-level corpus {s}→{src0}",
                docs[s],
                s,
                src0,
                out / "corpus" / f"fact.{s}-{src0}.jsonl",
            )
    if "fact" in cfg.corpus["levels"]:
        for s, t in pairs_dirs:
            corpus_step(
                "fact",
                f"corpus.fact.{s}-{t}",
                f"fact-level corpus {s}→{t}",
                docs[s],
                s,
                t,
                out / "corpus" / f"fact.{s}-{t}.jsonl",
            )
    if "align" in cfg.corpus["levels"]:
        # synonym pairs straight from the KB (no documents); optionally weighted by the concepts
        # the entity corpus actually mentions
        a, b = langs[0], langs[1]
        target = ["--target-lang", b]
        if multi:  # one record per concept and target language X (EN<->X pairs), in one file
            b, target = tag, ["--target-langs", ",".join(tlangs)]
        path = out / "corpus" / f"align.{a}-{b}.jsonl"
        argv = ["corpus", "align", "--kb", str(kb), "--lang", a, *target, "--out", str(path), "--seed", seed, *exclude]
        inputs = [kb, *exclude_inputs]
        if cfg.corpus["align_mentions"]:
            if not corpus_files["entity"]:
                raise KbioxlmError(
                    f"{cfg.path}: corpus.align_mentions needs entity records, but the pipeline builds none "
                    f"(check documents and corpus.directions)"
                )
            argv += ["--entity-records", *map(str, corpus_files["entity"])]
            inputs += corpus_files["entity"]
        corpus_files["align"].append(path)
        steps.append(
            Step(
                _unique(f"corpus.align.{a}-{b}", taken),
                f"concept-name alignment pairs {a}<->{b} from the KB",
                argv=argv + cfg.corpus["args"]["align"],
                inputs=inputs,
                outputs=[path],
            )
        )
    if "passage" in cfg.corpus["levels"]:
        for src in _pair_sources(cfg):
            path = out / "corpus" / f"passage.{src['label']}.jsonl"
            corpus_files["passage"].append(path)
            steps.append(
                Step(
                    _unique(f"corpus.passage.{src['label']}", taken),
                    f"passage-level corpus from {src['what']}",
                    argv=[
                        "corpus",
                        "passage",
                        *src["argv"],
                        "--lang",
                        src["langs"][0],
                        "--target-lang",
                        src["langs"][1],
                        "--out",
                        str(path),
                        "--seed",
                        seed,
                        *cfg.corpus["args"]["passage"],
                        *src["args"],
                    ],
                    inputs=src["inputs"],
                    outputs=[path],
                )
            )

    # ---------------------------------------------------------------------------- vocabulary
    kept: Path | None = None
    if cfg.vocab is not None:
        kept = out / "vocab" / "kept.json"
        # align records hold names, not text, and train no MLM head: not counted
        files = [p for lv in LEVELS if lv != "align" for p in corpus_files[lv]] + list(docs.values())
        if not files:
            raise KbioxlmError(f"{cfg.path}: vocab reduce needs corpora or documents to count tokens over")
        tok = cfg.vocab.get("tokenizer") or cfg.base_model["tokenizer"]
        steps.append(
            Step(
                _unique("vocab", taken),
                "reduced output vocabulary (ids the corpora use)",
                argv=[
                    "vocab",
                    "reduce",
                    "--tokenizer",
                    tok,
                    "--corpus",
                    *map(str, files),
                    "--out",
                    str(kept),
                    *cfg.vocab["args"],
                ],
                inputs=[*files, *_local(tok)],
                outputs=[kept],
            )
        )

    # ---------------------------------------------------------------------------- pretraining
    exports: dict[str, Path] = {}
    previous = "base"  # a stage without `model:` continues from the stage before it
    for st in cfg.pretrain:
        name = st["name"]
        model = st["model"]
        if model is None:
            model = previous
        if model == "base":
            model = cfg.base_model["path"]
            model_inputs = _local(model)
        elif model in exports:
            # An earlier stage's export is an input whether or not it exists yet: declared only once
            # it existed, the fingerprint would change between the first run and the next one and
            # the stage (and every arm branching off the same export) would be trained again.
            model_inputs = [exports[model] / "config.json", exports[model]]
            model = str(exports[model])
        elif any(model == other["name"] for other in cfg.pretrain):
            raise KbioxlmError(f"{cfg.path}: pretrain stage {name!r} starts from {model!r}, which comes later")
        else:  # a path or hub name
            model_inputs = _local(model)
        tokenizer = st["tokenizer"] or cfg.base_model["tokenizer"]
        train, train_inputs = [], []
        for item in st["train"]:
            if item in ("entity", "fact", "passage", "align", "entity_mono"):
                level = "entity" if item == "entity_mono" else item
                if not corpus_files[level]:
                    raise KbioxlmError(
                        f"{cfg.path}: pretrain stage {name!r} wants {item!r} records but the pipeline builds none "
                        f"(check corpus.levels, documents and pairs)"
                    )
                train += [f"{p}#mlm" if item == "entity_mono" else str(p) for p in corpus_files[level]]
                train_inputs += corpus_files[level]
            elif item == "mono":  # the per-language documents (not the mixed file)
                if not docs:
                    raise KbioxlmError(f"{cfg.path}: pretrain stage {name!r} wants 'mono' but no documents are listed")
                train += [str(p) for p in docs.values()]
                train_inputs += list(docs.values())
            else:
                train.append(item)
                train_inputs.append(Path(item.partition("#")[0]))
        run_dir = out / "pretrain" / name
        argv = [
            "pretrain",
            "--config",
            st["config"],
            f"model={model}",
            f"tokenizer={tokenizer}",
            f"train_files={','.join(train)}",
            f"output_dir={run_dir}",
            f"seed={cfg.seed}",
        ]
        # always set: the shipped stage configs name a kept.json the pipeline may not build
        argv.append(f"kept_ids={kept if kept is not None else 'null'}")
        argv += [f"{k}={_yaml_value(v)}" for k, v in st["overrides"].items()]
        argv.append("resume_from_checkpoint=auto")
        steps.append(
            Step(
                _unique(f"pretrain.{name}", taken),
                f"continued pretraining, stage {name!r}",
                argv=argv,
                inputs=[
                    Path(st["config"]),
                    *train_inputs,
                    *model_inputs,
                    *_local(tokenizer),
                    *([kept] if kept else []),
                ],
                outputs=[run_dir / "final"],
                launcher=st["launcher"],
                clean=[run_dir],
                can_resume=functools.partial(_has_checkpoint, run_dir),
            )
        )
        export_dir = out / "models" / name
        steps.append(
            Step(
                _unique(f"export.{name}", taken),
                f"export stage {name!r} as a plain Hugging Face checkpoint",
                argv=["export", "--checkpoint", str(run_dir / "final"), "--out", str(export_dir), *st["export_args"]],
                inputs=[run_dir / "final"],
                outputs=[export_dir / "config.json"],
                clean=[export_dir],
            )
        )
        exports[name] = export_dir
        previous = name

    # ---------------------------------------------------------------------------- probe
    if cfg.probe is not None:
        if not have_kb:
            raise KbioxlmError(f"{cfg.path}: probe needs a knowledge base (kb: ...) for its term pairs")
        steps += _probe_steps(cfg, exports, kb, heldout, taken)

    # ---------------------------------------------------------------------------- benchmark
    if cfg.benchmark is not None:
        steps += _benchmark_steps(cfg, exports, taken)
    return steps


def _pair_sources(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """``pairs:`` entries → the source options of ``kbioxlm corpus passage`` (one run each).

    * ``F`` or ``{path: F}``: JSON lines ``{"sent1", "sent2"}`` (``--pairs``; the builder tells the
      sides apart by script, so one language of the pair must be unspaced);
    * ``{<lang_a>: F, <lang_b>: F}``: line-aligned files such as ParaMed (``--parallel-a/-b``; the
      builder detokenises; ``per_article: N`` → ``--passages-per-article``);
    * ``{<lang_a>: F, <lang_b>: F, format: articles}``: JSON lines ``{id, text}`` joined on ``id``;
    * any entry may add ``args: [...]``, e.g. ``[--max-chars, "400"]``.
    """
    a, b = cfg.languages[0], cfg.languages[1]
    out: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, e in enumerate(cfg.pairs):
        what = f"{cfg.path}: pairs[{i}]"
        if isinstance(e, str):
            e = {"path": e}
        if not isinstance(e, dict):
            raise KbioxlmError(
                f"{what}: give a pair file, or {{{a}: F, {b}: F}} (line-aligned) / with format: articles"
            )
        extra = set(e) - {"path", "format", "per_article", "args", a, b}
        if extra:
            raise KbioxlmError(f"{what}: unknown key(s) {', '.join(sorted(extra))}")
        args = [str(x) for x in (e.get("args") or [])]
        if e.get("path"):
            p = Path(str(e["path"]))
            src: dict[str, Any] = {"argv": ["--pairs", str(p)], "inputs": [p], "what": p.name, "stem": p.stem}
        elif e.get(a) and e.get(b):
            pa, pb = Path(str(e[a])), Path(str(e[b]))
            fmt = e.get("format", "parallel")
            if fmt not in ("parallel", "articles"):
                raise KbioxlmError(f"{what}: format must be parallel (line-aligned) or articles")
            argv = [f"--{fmt}-a", str(pa), f"--{fmt}-b", str(pb)]
            if e.get("per_article") is not None:
                argv += ["--passages-per-article", str(e["per_article"])]
            src = {"argv": argv, "inputs": [pa, pb], "what": f"{pa.name} + {pb.name}", "stem": pa.stem}
        else:
            raise KbioxlmError(f"{what}: needs 'path' or both {a!r} and {b!r}")
        src["label"] = _unique(_slug(src.pop("stem")), taken)
        src.update(langs=(a, b), args=args)
        out.append(src)
    return out


def _model_label(cfg: PipelineConfig, key: str) -> str:
    """A model's name in tables: ``benchmark.names``, else the base model's name or the stage name."""
    names = cfg.benchmark["names"] if cfg.benchmark is not None else {}
    return names.get(key) or (cfg.base_model["name"] if key == "base" else key)


def _probe_steps(
    cfg: PipelineConfig, exports: dict[str, Path], kb: Path, heldout: Path | None, taken: set[str]
) -> list[Step]:
    """One ``kbioxlm probe`` per model (base and/or stage exports), then ``probe.report``.

    With ``probe.langs`` (several languages X): the same per X under ``probe/<X>/`` (steps
    ``probe.<X>.<model>``, ``probe.<X>.report``), then ``probe.report``: every X in one table."""
    pr = cfg.probe
    assert pr is not None
    if pr["langs"] is None:
        return _probe_pair_steps(cfg, exports, kb, heldout, taken, cfg.languages[1], cfg.out / "probe", "probe")
    steps: list[Step] = []
    per_lang: dict[str, dict[str, Path]] = {}
    a = cfg.languages[0]
    for x in pr["langs"]:
        sub = _probe_pair_steps(cfg, exports, kb, heldout, taken, x, cfg.out / "probe" / x, f"probe.{x}")
        per_lang[x] = {k: st.outputs[0] for k, st in zip(pr["models"], sub)}
        steps += sub
    root = cfg.out / "probe"
    labels = {k: _model_label(cfg, k) for k in pr["models"]}

    compare = {k: Path(v) for k, v in pr["compare"].items()}

    def report() -> dict[str, Any]:
        return write_multi_probe_report(per_lang, root, a, labels, compare)

    steps.append(
        Step(
            _unique("probe.report", taken),
            f"probe results of every model and language {a}<->X in one table",
            action=report,
            inputs=[p for res in per_lang.values() for p in res.values()] + list(compare.values()),
            outputs=[root / "results.json", root / "results.md", root / "results.png"],
            params={"models": list(pr["models"]), "labels": labels, "languages": [a, *per_lang]}
            | ({"compare": {k: str(v) for k, v in compare.items()}} if compare else {}),
        )
    )
    return steps


def _probe_pair_steps(
    cfg: PipelineConfig,
    exports: dict[str, Path],
    kb: Path,
    heldout: Path | None,
    taken: set[str],
    b: str,
    root: Path,
    prefix: str,
) -> list[Step]:
    """``prefix.<model>`` probes of ``languages[0]`` <-> ``b`` under ``root``, then ``prefix.report``
    (the first ``len(models)`` steps are the probes, in order)."""
    pr = cfg.probe
    assert pr is not None
    a = cfg.languages[0]
    steps: list[Step] = []
    results: dict[str, Path] = {}
    for key in pr["models"]:
        if key == "base":
            argv = ["probe", "--model", cfg.base_model["path"]]
            model_inputs = _local(cfg.base_model["path"])
            if cfg.base_model["tokenizer"] != cfg.base_model["path"]:
                argv += ["--tokenizer", cfg.base_model["tokenizer"]]
                model_inputs += _local(cfg.base_model["tokenizer"])
        else:  # an export ships its tokenizer
            argv = ["probe", "--model", str(exports[key])]
            model_inputs = [exports[key] / "config.json", exports[key]]
        argv += ["--kb", str(kb), "--lang", a, "--target-lang", b]
        inputs = [*model_inputs, kb]
        if heldout is not None:
            argv += ["--concepts", str(heldout)]
            inputs.append(heldout)
        if pr["parallel"] and pr["parallel"].get(b):
            argv += ["--parallel", pr["parallel"][a], pr["parallel"][b]]
            inputs += [Path(pr["parallel"][a]), Path(pr["parallel"][b])]
        sub = root / _slug(key)
        argv += [
            "--max-terms",
            str(pr["max_terms"]),
            "--max-sentences",
            str(pr["max_sentences"]),
            "--seed",
            str(cfg.seed),
            "--out",
            str(sub),
            *pr["args"],
        ]
        results[key] = sub / "probe.json"
        steps.append(
            Step(
                _unique(f"{prefix}.{_slug(key)}", taken),
                f"retrieval probe of the {_model_label(cfg, key)!r} model"
                + (f", {a}<->{b}" if prefix != "probe" else ""),
                argv=argv,
                inputs=inputs,
                outputs=[results[key]],
                clean=[sub],
            )
        )
    labels = {k: _model_label(cfg, k) for k in results}
    outputs = [root / "results.json", root / "results.md", root / "results.png"]
    # probe.compare: other runs' models of this pair (the several-language report shows them all)
    compare = {} if prefix != "probe" else {k: Path(v) for k, v in pr["compare"].items()}

    def report() -> dict[str, Any]:
        return write_probe_report(results, root, (a, b), labels, compare)

    steps.append(
        Step(
            _unique(f"{prefix}.report", taken),
            "probe results of every model side by side (table + chart)" + (f", {a}<->{b}" if prefix != "probe" else ""),
            action=report,
            inputs=list(results.values()) + list(compare.values()),
            outputs=outputs,
            params={"models": list(results), "labels": labels, "languages": [a, b]}
            | ({"compare": {k: str(v) for k, v in compare.items()}} if compare else {}),
        )
    )
    return steps


def _benchmark_steps(cfg: PipelineConfig, exports: dict[str, Path], taken: set[str]) -> list[Step]:
    bench = cfg.benchmark
    assert bench is not None
    base_cfg_path = Path(bench["config"])
    if not base_cfg_path.is_file():
        raise KbioxlmError(
            f"{base_cfg_path}: no such benchmark config (from benchmark.config of {cfg.path}; "
            "relative paths are taken from the pipeline config's folder)"
        )
    # ${shared} and relative paths of the benchmark config resolved now: the generated configs live elsewhere
    base_cfg = read_config_file(base_cfg_path, shared=cfg.variables["shared"])
    merged = _deep_merge(base_cfg, bench["overrides"])
    root = cfg.out / bench["dir"]  # a folder of its own per matrix (e.g. the ablations beside Tables 4-6)
    if (
        "data_root" not in merged
        and not os.environ.get("KBIOXLM_DATA")
        and cfg.variables["shared"] != str(paths.default_shared(root / "compare.yaml"))
    ):
        # a --shared that the generated configs would not find on their own
        merged["data_root"] = str(Path(cfg.variables["shared"]) / "data" / "kbioxlm-release")
    steps: list[Step] = []
    specs: list[dict[str, str]] = []
    results: list[Path] = []
    entries: list[tuple[str, dict[str, str] | None]] = [(k, None) for k in bench["compare"]]
    entries += [(m.get("name") or Path(m["path"]).name, m) for m in bench["extra_models"]]
    for key, extra in entries:
        label = bench["names"].get(key) or (cfg.base_model["name"] if key == "base" else key)
        if extra is not None:  # a further baseline (e.g. mBERT, InfoXLM by hub name)
            spec = {
                "name": label,
                "path": extra["path"],
                **({"tokenizer": extra["tokenizer"]} if extra.get("tokenizer") else {}),
            }
            model_inputs = _local(extra["path"])
        elif key == "base":
            spec = {"name": label, "path": cfg.base_model["path"]}
            if cfg.base_model["tokenizer"] != cfg.base_model["path"]:
                spec["tokenizer"] = cfg.base_model["tokenizer"]
            model_inputs = _local(cfg.base_model["path"])
        else:
            spec = {"name": label, "path": str(exports[key])}
            model_inputs = [exports[key] / "config.json", exports[key]]
        specs.append(spec)
        sub = root / _slug(key)
        conf_path = root / f"{_slug(key)}.yaml"
        text = _dump_bench({**merged, "models": [spec]}, bench["config"], f"model {label!r}")
        results.append(sub / "results.jsonl")
        steps.append(
            Step(
                _unique(f"benchmark.{_slug(key)}", taken),
                f"benchmark the {spec['name']!r} model",
                argv=["benchmark", "--config", str(conf_path), "--out", str(sub), "--no-progress"],
                inputs=[*model_inputs],
                outputs=[sub / "results.md", sub / "results.jsonl"],
                clean=[sub],
                generated={conf_path: text},
            )
        )
    combined = root / "compare.yaml"
    text = _dump_bench({**merged, "models": specs}, bench["config"], "all compared models, side by side")
    merged_results = root / "results.jsonl"

    def merge() -> None:
        lines: list[str] = []
        for r in results:
            if not r.is_file():
                raise KbioxlmError(f"{r}: missing; run the benchmark steps first")
            lines += [ln for ln in r.read_text(encoding="utf-8").splitlines() if ln.strip()]
        with atomic_write(merged_results) as fh:
            fh.writelines(ln + "\n" for ln in lines)

    steps.append(
        Step(
            _unique("benchmark.report", taken),
            "side-by-side tables of every compared model",
            argv=["benchmark", "--config", str(combined), "--out", str(root), "--report-only"],
            inputs=results,
            outputs=[root / "results.md"],
            generated={combined: text},
            prepare=merge,
            note="first merges the per-model results.jsonl files into benchmark/results.jsonl",
        )
    )
    return steps


def _dump_bench(data: dict[str, Any], origin: str, what: str) -> str:
    head = f"# Generated by `kbioxlm pipeline` from {origin} ({what}); edit the pipeline config, not this file.\n"
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def remove_paths(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
