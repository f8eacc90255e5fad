"""``kbioxlm corpus entity|fact|build|align|passage`` (docs/design.md, "Corpus semantics" and
"CLI contract"; docs/corpus.md)."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..errors import KbioxlmError
from ..io import read_text
from ..cliutil import hide_aliases
from .readers import INPUT_FORMATS, canonical_format


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="build entity / fact / passage pretraining corpora")
    sub = corpus.add_subparsers(dest="corpus_command", metavar="BUILDER")
    sub.required = True
    for task, text in (
        ("entity", "code-switch matched KB entities into the other language"),
        ("fact", "append KB facts between co-occurring entities, in the other language"),
        ("build", "entity and fact corpora from one matching pass (same outputs as `entity` and `fact`)"),
    ):
        p = sub.add_parser(task, help=text, description=text)
        p.add_argument("--kb", required=True, help="knowledge base (kb.sqlite)")
        p.add_argument("--input", required=True, help="input documents")
        p.add_argument(
            "--input-format",
            default="jsonl",
            choices=INPUT_FORMATS,
            type=canonical_format,
            help="jsonl: {id,lang,text} lines (id/lang optional); pubmedqa: ori_pqal.json; "
            "json-list: JSON list of objects with 'text' (CMeEE; old name: cmeee); lines: one document per "
            "line; blocks: blank-line separated records (old name: dialogue); the same names as the "
            "pipeline's documents.format",
        )
        p.add_argument("--text-field", default="text", help="field holding the text (jsonl, json-list)")
        p.add_argument("--lang", required=True, help="language of the documents (default for records without 'lang')")
        _add_targets(
            p,
            "the other language",
            "several target languages with weights, e.g. zh:0.5,es:0.25,fr:0.25 "
            "(normalised; a language without :w weighs 1): each switched entity / fact window of a --lang "
            "document takes a language drawn by weight among those its concept / facts have names in; "
            "--target-lang X is X:1",
        )
        if task == "build":
            p.add_argument("--levels", default="entity,fact", help="comma-separated levels to build: entity, fact")
            p.add_argument("--entity-out", help="output JSONL of the entity level")
            p.add_argument("--fact-out", help="output JSONL of the fact level")
        else:
            p.add_argument("--out", required=True, help="output JSONL")
        p.add_argument("--seed", type=int, default=0, help="seed of the per-document random choices (switches, facts)")
        p.add_argument("--num-workers", type=int, default=1, help="worker processes (output identical for any number)")
        p.add_argument("--skip-invalid", action="store_true", help="count and skip bad records instead of stopping")
        p.add_argument("--case", choices=("fold", "exact"), default="fold", help="case policy of the matcher")
        p.add_argument("--min-length", type=int, default=2, help="shortest name matched, in characters")
        p.add_argument(
            "--stop-list",
            action="append",
            metavar="FILE|default",
            help="file with one name per line never to match ('#' lines are comments); 'default': the "
            "shipped list of generic English names (resources/generic_names_en.txt); may be repeated",
        )
        p.add_argument(
            "--exclude-concepts",
            metavar="FILE",
            help="held-out concept ids, one per line (e.g. from `kbioxlm kb split`): none of them, and "
            "none of their names in any language, occurs in an entity, a switch or a fact",
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if task in ("entity", "build"):
            p.add_argument("--max-switches", type=int, default=10, help="switches per document at most")
            p.add_argument(
                "--balance",
                action=argparse.BooleanOptionalAction,
                default=True,
                help="equal switch totals per direction when the input has both languages",
            )
            p.add_argument(
                "--max-total-switches",
                type=int,
                default=None,
                help="cap the switches of each direction (to balance two separate runs)",
            )
        if task in ("fact", "build"):
            p.add_argument(
                "--fact-lang",
                choices=("target", "source"),
                default="target",
                help="language of the appended facts: the other language (default) or the document's",
            )
            p.add_argument("--window", type=int, default=1, help="sentences per window")
            p.add_argument("--max-facts", type=int, default=5, help="facts per record at most")
        p.set_defaults(func=_run_build, task=task)

    text = "alignment records: a concept's names in two languages (and mentions) for synonym alignment"
    p = sub.add_parser(
        "align",
        help=text,
        description=text + ". One record per concept with names in both "
        "languages, in a seeded shuffled order; see docs/corpus.md.",
    )
    p.add_argument("--kb", required=True, help="knowledge base (kb.sqlite)")
    p.add_argument("--lang", required=True, help="first language (e.g. en)")
    _add_targets(
        p,
        "second language (e.g. zh)",
        "several second languages, e.g. zh,es,fr,de: one record per concept "
        "and language X with names in --lang and X (weights are accepted and ignored)",
    )
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--seed", type=int, default=0, help="order of the records and choice of mentions (default: 0)")
    p.add_argument(
        "--exclude-concepts", metavar="FILE", help="held-out concept ids, one per line (e.g. from `kbioxlm kb split`)"
    )
    p.add_argument(
        "--max-names", type=int, default=8, help="names per language at most, preferred name first (default: 8)"
    )
    p.add_argument(
        "--entity-records",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="entity-level JSONL (from `corpus entity`) to take mentions from; may be repeated",
    )
    p.add_argument("--max-mentions", type=int, default=2, help="mentions per concept and language at most (default: 2)")
    p.set_defaults(func=_run_align)

    p = sub.add_parser("passage", help="positive / random / context passage pairs from aligned texts")
    p.add_argument("--pairs", help="JSONL of {sent1, sent2} aligned article pairs (e.g. the release's pair_data.json)")
    p.add_argument("--articles-a", help="JSONL {id, text} articles in --lang")
    p.add_argument("--articles-b", help="JSONL {id, text} articles in --target-lang, same ids")
    p.add_argument("--parallel-a", help="line-aligned file in --lang (e.g. ParaMed nejm.*.en)")
    p.add_argument("--parallel-b", help="line-aligned file in --target-lang (e.g. ParaMed nejm.*.zh)")
    hide_aliases(
        p.add_argument(
            "--lang",
            "--lang-a",
            default="en",
            help="language of side a (--articles-a/--parallel-a; the first text of a pair)",
        ),
        "--lang-a",
    )
    hide_aliases(
        p.add_argument(
            "--target-lang", "--lang-b", default="zh", help="language of side b (--articles-b/--parallel-b)"
        ),
        "--lang-b",
    )
    p.add_argument("--out", required=True, help="output JSONL of passage-pair records")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pairs and the passage cuts")
    p.add_argument("--max-chars", type=int, default=512, help="longest passage, in characters")
    p.add_argument(
        "--passages-per-article", type=int, default=4, help="line-aligned input: passages per pseudo-article"
    )
    p.add_argument(
        "--context-lang",
        choices=("same", "cross"),
        default="same",
        help="context pairs: the next passage in the same language (paper), or the passage after the aligned "
        "one in the other language (every pair cross-lingual: the label cannot be read off the scripts)",
    )
    p.add_argument("--num-workers", type=int, default=1, help="worker processes (output identical for any number)")
    p.add_argument("--skip-invalid", action="store_true", help="count and skip bad articles/pairs instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_passage)


DEFAULT_STOP_LIST = "generic_names_en.txt"


def _add_targets(p: argparse.ArgumentParser, one: str, several: str) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--target-lang", help=one)
    group.add_argument("--target-langs", metavar="LANG[:W],...", help=several)


def _targets(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    """``--target-lang X`` as ``((X, 1.0),)``, else ``--target-langs`` parsed, weights normalised."""
    from .targets import normalise, parse_target_langs

    if args.target_lang is not None:
        return ((args.target_lang, 1.0),)
    return normalise(parse_target_langs(args.target_langs))


def _read_stop_list(paths: str | list[str] | None) -> tuple[str, ...]:
    """Names of the ``--stop-list`` files, in order: one per line, blank and ``#`` lines skipped;
    ``default`` is the shipped :data:`DEFAULT_STOP_LIST`."""
    if not paths:
        return ()
    if isinstance(paths, str):
        paths = [paths]
    out: list[str] = []
    for path in paths:
        if path == "default":
            text = resources.files("kbioxlm.resources").joinpath(DEFAULT_STOP_LIST).read_text(encoding="utf-8")
            lines = text.splitlines()
        else:
            lines = read_text(path).splitlines()  # a bad byte is reported with its line
        out.extend(s for line in lines if (s := line.strip()) and not s.startswith("#"))
    return tuple(out)


def _read_excluded(path: str | None) -> tuple[str, ...]:
    if not path:
        return ()
    from ..kb.split import read_concept_list

    return read_concept_list(path)


def _run_build(args: argparse.Namespace) -> int:
    from .build import run_levels
    from .knowledge import BuildOptions

    if args.num_workers < 1:
        raise KbioxlmError(f"--num-workers must be at least 1, got {args.num_workers}")
    if not Path(args.input).exists():
        raise KbioxlmError(f"{args.input}: cannot read (no such file)")
    targets = _targets(args)
    opts = BuildOptions(
        kb=args.kb,
        lang=args.lang,
        target_lang=targets[0][0],
        target_langs=targets if len(targets) > 1 else (),
        task="entity" if args.task == "build" else args.task,
        seed=args.seed,
        max_switches=getattr(args, "max_switches", 10),
        case=args.case,
        min_length=args.min_length,
        stop_words=_read_stop_list(args.stop_list),
        exclude_concepts=_read_excluded(args.exclude_concepts),
        fact_lang=getattr(args, "fact_lang", "target"),
        window=getattr(args, "window", 1),
        max_facts=getattr(args, "max_facts", 5),
    )
    if opts.max_switches < 0:
        raise KbioxlmError("--max-switches must not be negative")
    if args.task == "build":
        levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
        bad = [lv for lv in levels if lv not in ("entity", "fact")]
        if bad or not levels:
            raise KbioxlmError(f"--levels: unknown level(s) {','.join(bad) or '(none)'} (choose from entity, fact)")
        outs = {}
        for lv in levels:
            path = getattr(args, f"{lv}_out")
            if not path:
                raise KbioxlmError(f"--levels includes {lv}: --{lv}-out is required")
            outs[lv] = path
    else:
        outs = {args.task: args.out}
    run_levels(
        opts,
        args.input,
        outs,
        input_format=args.input_format,
        text_field=args.text_field,
        num_workers=args.num_workers,
        skip_invalid=args.skip_invalid,
        balance=getattr(args, "balance", True),
        max_total_switches=getattr(args, "max_total_switches", None),
        progress=False if args.no_progress else None,
    )
    return 0


def _run_align(args: argparse.Namespace) -> int:
    from .align import build_align

    targets = [lang for lang, _w in _targets(args)]
    build_align(
        args.kb,
        args.lang,
        targets[0] if len(targets) == 1 else targets,
        args.out,
        seed=args.seed,
        exclude=_read_excluded(args.exclude_concepts),
        max_names=args.max_names,
        entity_records=args.entity_records,
        max_mentions=args.max_mentions,
    )
    return 0


def _run_passage(args: argparse.Namespace) -> int:
    from .passage import run_passage

    articles = parallel = None
    if args.articles_a or args.articles_b:
        if not (args.articles_a and args.articles_b):
            raise KbioxlmError("--articles-a and --articles-b go together")
        articles = (args.articles_a, args.articles_b)
    if args.parallel_a or args.parallel_b:
        if not (args.parallel_a and args.parallel_b):
            raise KbioxlmError("--parallel-a and --parallel-b go together")
        parallel = (args.parallel_a, args.parallel_b)
    run_passage(
        args.out,
        pairs=args.pairs,
        articles=articles,
        parallel=parallel,
        lang_a=args.lang,
        lang_b=args.target_lang,
        seed=args.seed,
        max_chars=args.max_chars,
        num_workers=args.num_workers,
        skip_invalid=args.skip_invalid,
        passages_per_article=args.passages_per_article,
        context_lang=args.context_lang,
        progress=False if args.no_progress else None,
    )
    return 0
