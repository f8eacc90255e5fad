"""``kbioxlm probe``: cross-lingual term and sentence retrieval per layer, minutes on CPU."""

from __future__ import annotations

import argparse

from ..cliutil import hide_aliases
from .retrieval import format_summary, run_probe


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="cross-lingual alignment probe: term and sentence retrieval at every layer",
        description="Embed KB concept names (and parallel sentences) in two languages as the mean of their "
                    "pieces' hidden vectors at every layer, retrieve across languages by cosine similarity, and "
                    "write OUT/probe.json (accuracy@1 and MRR in percent, both directions, per layer).",
    )  # fmt: skip
    p.add_argument("--model", required=True, help="HF encoder folder or hub name, or a kbioxlm training checkpoint")
    p.add_argument("--tokenizer", help="tokenizer name or folder (default: the model's)")
    p.add_argument("--kb", required=True, help="knowledge base (kb.sqlite) whose concept names are probed")
    hide_aliases(
        p.add_argument(
            "--lang", "--source-lang", default="en", help="first language (the source of the first direction)"
        ),
        "--source-lang",
    )
    p.add_argument("--target-lang", default="zh", help="the other language")
    p.add_argument("--concepts", metavar="FILE", help="probe only these concept ids (one per line, # comments)")
    par = p.add_mutually_exclusive_group()
    par.add_argument("--parallel", nargs=2, metavar=("SRC_FILE", "TGT_FILE"),
                     help="line-aligned UTF-8 text files for sentence retrieval")  # fmt: skip
    par.add_argument("--parallel-jsonl", metavar="FILE",
                     help='sentence pairs as JSON lines {"<lang>": text, "<target-lang>": text}')  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (probe.json)")
    p.add_argument("--max-terms", type=_positive, default=2000, help="sample this many concepts when more qualify")
    p.add_argument("--max-sentences", type=_positive, default=1000, help="sample this many pairs when more exist")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--batch-size", type=_positive, default=64, help="texts per forward pass (default 64)")
    p.add_argument("--max-length", type=_positive, default=128, help="pieces per text (default 128)")
    p.add_argument("--num-threads", type=_positive, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    parallel = tuple(args.parallel) if args.parallel else args.parallel_jsonl
    res = run_probe(
        args.model, args.kb, args.lang, args.target_lang, out_dir=args.out, concepts=args.concepts,
        parallel=parallel, max_terms=args.max_terms, max_sentences=args.max_sentences, seed=args.seed,
        batch_size=args.batch_size, max_length=args.max_length, tokenizer=args.tokenizer,
        num_threads=args.num_threads,
    )  # fmt: skip
    print(format_summary(res))
    return 0
