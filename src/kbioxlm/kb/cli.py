"""``kbioxlm kb ...``: import terminologies, mine entity pairs, print statistics (docs/design.md,
"CLI contract")."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..cliutil import hide_aliases
from ..io import SkipCounter
from .store import KnowledgeBase


def _skip(args: argparse.Namespace) -> SkipCounter | None:
    return SkipCounter() if getattr(args, "skip_invalid", False) else None


def _print_summary(what: str, counts: dict[str, Any]) -> None:
    parts = []
    for k, v in counts.items():
        if isinstance(v, list):
            v = f"{len(v)}" + (f" ({', '.join(map(str, v[:8]))}{', ...' if len(v) > 8 else ''})" if v else "")
        elif isinstance(v, dict):
            v = json.dumps(v, ensure_ascii=False)
        parts.append(f"{k}={v}")
    print(f"{what}: " + " ".join(parts))


def _umls(args: argparse.Namespace) -> int:
    from .umls import import_umls

    counts = import_umls(
        args.kb, args.rrf_dir, languages=args.languages, sources=args.sources, translations=args.translations,
        translation_lang=args.translation_lang, source=args.source, skip=_skip(args),
    )  # fmt: skip
    _print_summary(f"imported UMLS into {args.kb}", counts)
    return 0


def _obo(args: argparse.Namespace) -> int:
    from .obo import import_obo

    counts = import_obo(
        args.kb, args.obo, translations=args.translations, lang=args.lang, source=args.source,
        concept_type=args.type, drop=tuple(x for x in args.drop.split(",") if x),
        synonym_scopes=tuple(x for x in args.synonym_scopes.split(",") if x),
        accept_candidate=args.accept_candidate, skip=_skip(args),
    )  # fmt: skip
    _print_summary(f"imported OBO into {args.kb}", counts)
    return 0


def _icd10(args: argparse.Namespace) -> int:
    from .icd10 import import_icd10

    counts = import_icd10(
        args.kb, args.xml, zh_categories=args.zh_categories, zh_blocks=args.zh_blocks, source=args.source,
        concept_type=args.type, skip=_skip(args),
    )  # fmt: skip
    _print_summary(f"imported ICD-10 into {args.kb}", counts)
    return 0


def _tsv(args: argparse.Namespace) -> int:
    from .tsv_import import import_tsv

    counts = import_tsv(
        args.kb, concepts=args.concepts, relations=args.relations, relation_names=args.relation_names,
        source=args.source, skip=_skip(args),
    )  # fmt: skip
    _print_summary(f"imported into {args.kb}", counts)
    return 0


def _mine_pairs(args: argparse.Namespace) -> int:
    from .pairs import mine_pairs

    stats = mine_pairs(
        args.kb, args.source, args.target, args.lang, args.target_lang, min_count=args.min_count,
        source_name=args.source_name,
    )  # fmt: skip
    _print_summary(f"mined pairs into {args.kb}", stats)
    return 0


def _split(args: argparse.Namespace) -> int:
    from .split import split_concepts

    counts = split_concepts(
        args.kb, args.holdout_fraction, args.seed, args.langs.split(","), args.out, max_concepts=args.max_concepts
    )
    _print_summary(f"kb split {args.kb}", {**counts, "out": args.out})
    return 0


def _stats(args: argparse.Namespace) -> int:
    with KnowledgeBase(args.kb) as kb:
        stats: dict[str, Any] = kb.stats()  # the JSON document; its values are read by key below
        if args.tokenizer:
            from .coverage import tokenizer_coverage

            stats["tokenizer"] = tokenizer_coverage(kb, args.tokenizer)
        if args.json:
            print(json.dumps(stats, ensure_ascii=False))
            return 0
        names: dict[str, int] = stats["names"]
        print(f"knowledge base {args.kb}")
        print(f"  {'concepts':<12} {stats['concepts']:>10,}")
        print(f"  {'relations':<12} {stats['relations']:>10,}")
        for lang, n in names.items():
            print(f"  {'names ' + lang:<12} {n:>10,}")
        rows = kb.source_stats()
        if rows:
            print(f"  {'source':<24} {'concepts':>10} {'names':>10} {'relations':>10}")
            for src, nc, nn, nr in rows:
                print(f"  {src:<24} {nc:>10,} {nn:>10,} {nr:>10,}")
        if args.tokenizer:
            cov = stats["tokenizer"]
            print(
                f"  tokenizer {cov['tokenizer']}: unknown pieces ({cov['unk_token'] or 'no unknown token'}) in the names"
            )
            print(
                f"  {'lang':<6} {'names':>10} {'pieces':>10} {'unk pieces':>11} {'unk rate':>9} {'names with unk':>15}"
            )
            for lang, c in cov["languages"].items():
                print(
                    f"  {lang:<6} {c['names']:>10,} {c['pieces']:>10,} {c['unk_pieces']:>11,} "
                    f"{100 * c['unk_rate']:>8.2f}% {c['names_with_unk']:>15,}"
                )
    return 0


def _add_common(p: argparse.ArgumentParser, source_default: str | None, source_help: str) -> None:
    p.add_argument("--kb", required=True, help="knowledge base file (created if absent)")
    p.add_argument("--source", default=source_default, help=source_help)
    p.add_argument("--skip-invalid", action="store_true", help="skip and count malformed lines instead of failing")


def register(subparsers: argparse._SubParsersAction) -> None:
    kb = subparsers.add_parser("kb", help="build and inspect the bilingual knowledge base (kb.sqlite)")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="KB_COMMAND")
    kb_sub.required = True

    imp = kb_sub.add_parser("import", help="import a terminology (re-import of a source replaces it)")
    imp_sub = imp.add_subparsers(dest="import_format", metavar="FORMAT")
    imp_sub.required = True

    p = imp_sub.add_parser("umls", help="UMLS Metathesaurus RRF files (MRCONSO, MRREL, MRSTY)")
    p.add_argument("--rrf-dir", required=True, help="folder holding MRCONSO.RRF (and MRREL.RRF, MRSTY.RRF)")
    p.add_argument("--languages", help="comma-separated LAT or ISO codes, e.g. ENG,CHI (default: all)")
    p.add_argument("--sources", help="comma-separated source vocabularies (SAB), e.g. MSH,SNOMEDCT_US (default: all)")
    p.add_argument("--translations", help="translation TSV: cui<TAB>lang<TAB>name or english_name<TAB>target_name")
    p.add_argument("--translation-lang", default="zh", help="target language of english_name<TAB>target_name tables")
    _add_common(p, "umls", "source label (default: umls)")
    p.set_defaults(func=_umls)

    p = imp_sub.add_parser("obo", help="OBO ontology (e.g. HPO) plus Babelon translation TSVs")
    p.add_argument("--obo", required=True, help="the .obo file")
    p.add_argument(
        "--translations",
        nargs="+",
        action="extend",
        default=[],
        metavar="F",
        help="Babelon TSV file(s); the option may be repeated",
    )
    p.add_argument("--lang", default="en", help="language of the OBO names (default: en)")
    p.add_argument("--type", help="concept type (default: the term's namespace)")
    p.add_argument("--drop", default="HP:0000001", help="comma-separated ids to leave out (default: the HPO root)")
    p.add_argument(
        "--synonym-scopes", default="EXACT,RELATED", help="synonym scopes kept as names (default: EXACT,RELATED)"
    )
    p.add_argument("--accept-candidate", action="store_true", help="also take Babelon rows with status CANDIDATE")
    _add_common(p, None, "source label (default: obo:<ontology>)")
    p.set_defaults(func=_obo)

    p = imp_sub.add_parser("icd10", help="WHO ICD-10 XML plus Chinese category/block names")
    p.add_argument("--xml", required=True, help="icd_10_v2019.xml")
    p.add_argument("--zh-categories", help="TSV code<TAB>disease (disease.csv)")
    p.add_argument(
        "--zh-blocks", help="TSV code_lower_bound<TAB>code_upper_bound<TAB>level<TAB>catalog (disease_catalog.csv)"
    )
    p.add_argument("--type", default="Disease", help="concept type (default: Disease)")
    _add_common(p, "icd10", "source label (default: icd10)")
    p.set_defaults(func=_icd10)

    p = imp_sub.add_parser("tsv", help="generic concepts / relations / relation names (TSV or JSONL)")
    p.add_argument("--concepts", help="id<TAB>type<TAB>lang<TAB>name[<TAB>preferred] (or .jsonl)")
    p.add_argument("--relations", help="head<TAB>rel<TAB>tail (or .jsonl)")
    p.add_argument("--relation-names", help="rel<TAB>lang<TAB>text (or .jsonl); overrides earlier names")
    _add_common(p, None, "source label (default: tsv:<concepts file stem>)")
    p.set_defaults(func=_tsv)

    p = kb_sub.add_parser("mine-pairs", help="mine bilingual entity pairs from two parallel CoNLL NER files")
    p.add_argument("--source", required=True, help="CoNLL file in the source language")
    p.add_argument("--target", required=True, help="CoNLL file in the target language, same document ids")
    hide_aliases(
        p.add_argument("--lang", "--source-lang", required=True, help="language of --source (e.g. en)"), "--source-lang"
    )
    p.add_argument("--target-lang", required=True, help="language of --target (e.g. zh)")
    p.add_argument("--min-count", type=int, default=2, help="keep pairs seen at least this often (default: 2)")
    p.add_argument("--source-name", help="source label in the KB (default: pairs:<src>-<tgt>)")
    p.add_argument("--kb", required=True, help="knowledge base file (created if absent)")
    p.set_defaults(func=_mine_pairs)

    p = kb_sub.add_parser(
        "split",
        help="choose held-out concepts (deterministic) for --exclude-concepts of the corpus builders",
        description="Hold out a fraction of the concepts that have a name in every language of --langs: "
        "ranked by sha256(f'{seed}:{concept_id}'), independent of the KB's row order. Writes one concept "
        "id per line, sorted.",
    )
    p.add_argument("--kb", required=True, help="knowledge base (kb.sqlite)")
    p.add_argument(
        "--holdout-fraction", type=float, required=True, help="fraction of the candidates held out, in (0, 1]"
    )
    p.add_argument("--max-concepts", type=int, default=None, help="hold out at most this many concepts")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the ranking (the same seed holds out the same concepts)"
    )
    p.add_argument(
        "--langs", default="en,zh", help="comma-separated languages a candidate needs names in (default: en,zh)"
    )
    p.add_argument("--out", required=True, help="output file: one held-out concept id per line")
    p.set_defaults(func=_split)

    p = kb_sub.add_parser("stats", help="concept / name / relation counts")
    p.add_argument("--kb", required=True, help="knowledge base (kb.sqlite)")
    p.add_argument("--json", action="store_true", help='print {"concepts": n, "names": {"en": n, ...}, "relations": n}')
    p.add_argument(
        "--tokenizer",
        metavar="NAME|DIR",
        help="also print the share of unknown pieces in each language's names under this tokenizer "
        '(e.g. the model\'s: does its vocabulary cover the language?); JSON: under "tokenizer"',
    )
    p.set_defaults(func=_stats)
