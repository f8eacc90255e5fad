"""``kbioxlm llm-eval``: prompted LLM baselines over an OpenAI-compatible endpoint (docs/llm-baselines.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import KbioxlmError
from ..io import check_writable_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "llm-eval",
        help="score a chat LLM on NER / RE / DC by prompting (zero- or few-shot)",
        description="Prompt an OpenAI-compatible endpoint, parse the answers, score with the fine-tuning metrics.",
    )
    p.add_argument(
        "--task",
        required=True,
        choices=("ner", "re", "dc"),
        help="ner: entity tagging (ADE); re: relation yes/no (GAD); dc: multi-label classes (HoC)",
    )
    p.add_argument("--test", required=True, help="test file (release CoNLL / NER JSONL, or JSON lines)")
    p.add_argument("--train", help="demonstrations are sampled from this file (few-shot)")
    p.add_argument("--shots", type=int, default=0, help="K demonstrations (0 = zero-shot)")
    p.add_argument("--seed", type=int, default=0, help="few-shot sampling seed (same sampler as fine-tuning)")
    p.add_argument("--dataset", help="dataset name used in the sampling seed (default: ade / gad / hoc by task)")
    p.add_argument("--base-url", help="default: $KBIOXLM_BASE_URL or $OPENAI_BASE_URL")
    p.add_argument("--model", help="default: $KBIOXLM_MODEL")
    p.add_argument("--api-key", help="default: $KBIOXLM_API_KEY or $OPENAI_API_KEY")
    p.add_argument("--out", required=True, help="output directory (results.json, predictions.jsonl)")
    p.add_argument("--lang", help="language of the test file (default: detected)")
    p.add_argument("--prompt-dir", help="directory overriding the packaged prompt templates (ner.txt, re.txt, dc.txt)")
    p.add_argument("--cache", help="SQLite answer cache (default: <out>/cache.sqlite)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=6, help="retries of a failed request (with backoff)")
    p.add_argument(
        "--max-failed",
        type=int,
        default=0,
        help="requests allowed to fail for good (after retries) before the run stops with exit status 2 "
        "and writes nothing; allowed failures score as 'no prediction' and are counted in n_failed",
    )
    p.add_argument("--max-tokens", type=int, default=1024, help="answer length limit per request")
    p.add_argument("--limit", type=int, help="only the first N test records (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..chat.cache import Cache
    from ..chat.client import ChatClient
    from .evaluate import run_llm_eval

    if args.shots < 0:
        raise KbioxlmError("--shots must be >= 0")
    if args.shots and not args.train:
        raise KbioxlmError("--shots needs --train")
    check_writable_dir(args.out)
    client = ChatClient(
        base_url=args.base_url,
        model=args.model,
        api_key=args.api_key,
        timeout=args.timeout,
        max_retries=args.max_retries,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
    )
    cache = Cache(args.cache or Path(args.out) / "cache.sqlite")
    ok = False
    try:
        res = run_llm_eval(
            args.task,
            args.test,
            client,
            args.out,
            lang=args.lang,
            train_path=args.train,
            shots=args.shots,
            seed=args.seed,
            dataset=args.dataset,
            prompt_dir=args.prompt_dir,
            cache=cache,
            limit=args.limit,
            progress=not args.no_progress,
            max_failed=args.max_failed,
        )
        ok = True
    finally:
        if ok:
            cache.close()
        else:  # failed before any answer (bad input, no endpoint): leave no empty cache behind
            cache.discard_if_unused()
        client.close()
    brief = {k: res[k] for k in ("task", "metric", "f1", "precision", "recall", "n_test", "n_unparsed", "n_failed")}
    json.dump(brief, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
