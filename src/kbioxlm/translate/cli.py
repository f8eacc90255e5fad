"""``kbioxlm translate``: translate a labelled NER or sequence-classification file (docs/translation.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cliutil import hide_aliases
from ..errors import KbioxlmError
from ..schema import check_lang

DEFAULT_MIN_ACCEPTED = 0.1
"""Below this share of accepted items ``translate`` fails. Quality rejections alone stay well above it
with a working backend (97.8% accepted on the release's ADE set; 29% for strict KB code-switching);
a failing backend (HTTP 500, nothing listening) accepts nothing."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate a labelled dataset with entity-anchored markers",
        description="Wrap gold entities as <n>…</n>, translate, project labels back; "
        "rejected items go to the review file with their reasons.",
    )
    p.add_argument(
        "--task",
        required=True,
        choices=("ner", "seqcls"),
        help="ner: entity-labelled sentences; seqcls: texts with sentence/document labels (RE, DC)",
    )
    p.add_argument("--input", required=True, help="release CoNLL / NER JSONL (ner) or JSON lines (seqcls)")
    hide_aliases(p.add_argument("--lang", "--source-lang", required=True, help="language of --input"), "--source-lang")
    p.add_argument("--target-lang", required=True, help="language to translate into")
    p.add_argument(
        "--backend",
        required=True,
        choices=("openai", "hf", "kb"),
        help="openai: an OpenAI-compatible chat endpoint; hf: a local seq2seq model; kb: KB name substitution",
    )
    p.add_argument(
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
        "(default: $KBIOXLM_BASE_URL or $OPENAI_BASE_URL)",
    )
    p.add_argument("--model", help="chat model name (openai) or HF model name/path (hf); default $KBIOXLM_MODEL")
    p.add_argument("--api-key", help="default: $KBIOXLM_API_KEY or $OPENAI_API_KEY (local servers need none)")
    p.add_argument("--kb", help="kb.sqlite (kb backend)")
    p.add_argument(
        "--kb-partial", action="store_true", help="kb backend: accept items where only some entities have a target name"
    )
    p.add_argument("--out", required=True, help="translated dataset (.txt/.conll = release CoNLL for ner; else JSONL)")
    p.add_argument("--review", required=True, help="JSONL of rejected items with reasons")
    p.add_argument("--summary", help="write the summary JSON here too (always printed)")
    p.add_argument("--cache", help="SQLite answer cache (default: <out>.cache.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not persist answers")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests (openai backend)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=6, help="retries of a failed request (with backoff)")
    p.add_argument("--max-tokens", type=int, default=4096, help="answer length limit per request (openai, --check)")
    p.add_argument("--prompt-dir", help="directory overriding the packaged prompt templates")
    p.add_argument("--check", action="store_true", help="second pass: LLM consistency check (reason llm_flagged)")
    p.add_argument("--check-model", help="model for --check (default: --model)")
    p.add_argument("--fixes", help="review file with 'fix' filled in: use those translations for those ids")
    p.add_argument(
        "--max-residue-words",
        type=int,
        default=3,
        help="QC: reject a translation with more than this many untranslated source-language words",
    )
    p.add_argument(
        "--ratio-factor",
        type=float,
        default=3.0,
        help="QC: reject a translation whose length ratio to the source is off by more than this factor",
    )
    p.add_argument("--no-residue-check", action="store_true", help="QC: do not check for untranslated words")
    p.add_argument("--no-ratio-check", action="store_true", help="QC: do not check the length ratio")
    p.add_argument("--batch-size", type=int, default=16, help="hf backend batch size")
    p.add_argument("--max-new-tokens", type=int, default=256, help="hf backend")
    p.add_argument("--hf-prefix", default="", help='hf backend input prefix, e.g. "translate English to Chinese: "')
    p.add_argument("--hf-forced-bos", help="hf backend: target-language token (NLLB/mBART), e.g. zho_Hans")
    p.add_argument(
        "--min-accepted",
        type=float,
        default=DEFAULT_MIN_ACCEPTED,
        metavar="FRACTION",
        help="fail (exit 2, --out not written) when fewer than this fraction of the items is accepted "
        f"(default {DEFAULT_MIN_ACCEPTED:g}; nothing accepted always fails unless 0)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..chat.cache import Cache
    from ..chat.client import ChatClient
    from .backends import Backend, HFBackend, KBBackend, OpenAIBackend
    from .dataset import load_fixes, translate_dataset, write_outputs
    from .qc import QCConfig

    for flag, lang in (("--lang", args.lang), ("--target-lang", args.target_lang)):
        try:
            check_lang(lang)
        except ValueError as exc:
            raise KbioxlmError(f"{flag}: {exc}") from exc
    if not Path(args.input).is_file():
        raise KbioxlmError(f"{args.input}: no such file")
    if Path(args.out).resolve() == Path(args.input).resolve():
        raise KbioxlmError("--out must differ from --input")
    if not 0.0 <= args.min_accepted <= 1.0:
        raise KbioxlmError(f"--min-accepted must be a fraction between 0 and 1, got {args.min_accepted:g}")

    def client(model: str | None) -> ChatClient:
        return ChatClient(
            base_url=args.base_url,
            model=model,
            api_key=args.api_key,
            timeout=args.timeout,
            max_retries=args.max_retries,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
        )

    backend: Backend
    if args.backend == "openai":
        backend = OpenAIBackend(client(args.model), args.prompt_dir)
    elif args.backend == "hf":
        if not args.model:
            raise KbioxlmError("--backend hf needs --model (a Hugging Face seq2seq model name or path)")
        backend = HFBackend(
            args.model,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            prefix=args.hf_prefix,
            forced_bos_token=args.hf_forced_bos,
            progress=not args.no_progress,
        )
    else:
        if not args.kb:
            raise KbioxlmError("--backend kb needs --kb kb.sqlite")
        backend = KBBackend(args.kb, allow_partial=args.kb_partial)
    checker = client(args.check_model or (args.model if args.backend == "openai" else None)) if args.check else None

    cache = Cache(None if args.no_cache else (args.cache or f"{args.out}.cache.sqlite"))
    qc = QCConfig(
        max_residue_words=args.max_residue_words,
        ratio_factor=args.ratio_factor,
        check_residue=not args.no_residue_check,
        check_ratio=not args.no_ratio_check,
    )
    ok = False
    try:
        result = translate_dataset(
            args.task,
            args.input,
            args.lang,
            args.target_lang,
            backend,
            cache,
            qc,
            checker=checker,
            prompt_dir=args.prompt_dir,
            fixes=load_fixes(args.fixes),
            progress=not args.no_progress,
        )
        failure = too_little_accepted(result.summary, args.min_accepted)
        ok = failure is None
    finally:
        if ok:
            cache.close()
        else:  # failed before any answer (bad input, dead backend): leave no empty cache behind
            cache.discard_if_unused()
    if failure:
        # The review file and summary say what went wrong; the dataset itself is not written, so
        # a pipeline cannot go on with an empty or nearly empty translation.
        write_outputs(result, args.task, None, args.review, args.summary)
        raise KbioxlmError(f"{args.input}: translation failed: {failure}; rejected items in {args.review}")
    write_outputs(result, args.task, args.out, args.review, args.summary)
    json.dump(result.summary, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


def too_little_accepted(summary: dict, min_accepted: float) -> str | None:
    """Why a run accepted too little (``None`` when it is fine): the counts and the backend's last error."""
    n_in, n_acc = int(summary["n_input"]), int(summary["n_accepted"])
    if not n_in or (n_acc >= min_accepted * n_in and (n_acc > 0 or min_accepted == 0)):
        return None
    why = f"{n_acc} of {n_in} items accepted (--min-accepted {min_accepted:g})"
    if summary.get("n_backend_errors"):
        why += f"; {summary['n_backend_errors']} backend error(s), last: {summary.get('last_backend_error')}"
    elif summary.get("reasons"):
        top = sorted(summary["reasons"].items(), key=lambda kv: -kv[1])[:3]
        why += "; rejected: " + ", ".join(f"{k}={v}" for k, v in top)
    return " ".join(why.split())
