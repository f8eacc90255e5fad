"""Entity and fact builds: input documents in, Entity/Fact JSONL out.

Passes over the input (streamed each time; memory is bounded by the KB, not the corpus):

1. *scan*: validate every document (errors name ``file:line`` before any work is done), count
   documents per language.
2. *count* (only when switches must be balanced or capped): how many switches each document can
   take, ``min(max_switches, switchable entities)``; one small integer per document is kept.
3. *build*: match, switch / collect facts, write records through ``atomic_write``.

Balance (entity builds). Documents in ``--lang`` switch into ``--target-lang`` and documents in
``--target-lang`` switch back into ``--lang``. When a run sees documents of both languages and
``--balance`` is on (default), each direction gets the same budget ``B = min(total_L, total_T)``
of switches, where ``total_X`` is the sum of the per-document capacities of pass 2; the budget is
spread over that direction's documents in order by cumulative rounding (document ``i`` gets
``floor(B*C_i/total) - floor(B*C_{i-1}/total)`` switches, ``C_i`` the cumulative capacity), so
the totals are exactly equal and every document is treated alike. ``--max-total-switches K``
additionally caps each direction at ``K``, which balances two separate monolingual runs: pass the
smaller run's reported total to the other. The summary reports switches per direction.
"""

from __future__ import annotations

import random
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import KbioxlmError, where
from ..io import SkipCounter, atomic_write
from ..kb.store import KnowledgeBase
from .entity import build_entity_record, count_switchable
from .fact import build_fact_records
from .knowledge import BuildOptions, Knowledge
from .readers import iter_documents
from .runner import Summary, chunked, doc_seed, dumps_record, ordered_map, remove_stale_temporaries

_KNOW: Knowledge | None = None
_KNOW_KEY: tuple | None = None


def _init_worker(options: BuildOptions, langs: tuple[str, ...]) -> None:
    """Load the KB once per process (a forked worker inherits the parent's copy)."""
    global _KNOW, _KNOW_KEY
    key = (options, langs)
    if _KNOW is None or _KNOW_KEY != key:
        _KNOW = Knowledge.load(options, langs)
        _KNOW_KEY = key


def _count_chunk(docs: list[dict[str, Any]]) -> list[int]:
    assert _KNOW is not None
    return [count_switchable(d, _KNOW) for d in docs]


def _entity_chunk(items: list[tuple[dict[str, Any], int]]) -> tuple[str, dict[str, Any]]:
    know = _KNOW
    assert know is not None
    lines = []
    stats: dict[str, Any] = {"documents": 0, "records": 0, "entities": 0, "chars": 0, "no_match": 0}
    switches: dict[str, int] = {}
    for doc, quota in items:
        stats["documents"] += 1
        stats["chars"] += len(doc["text"])
        rng = random.Random(doc_seed(know.options.seed, "entity", doc["id"]))
        rec, k = build_entity_record(doc, know, rng, quota)
        if rec is None:
            stats["no_match"] += 1
            continue
        stats["records"] += 1
        stats["entities"] += len(rec["entities"])
        if k:
            d = f"{doc['lang']}->{know.other(doc['lang'])}"
            switches[d] = switches.get(d, 0) + k
        lines.append(dumps_record(rec))
    stats["switches"] = switches
    return ("\n".join(lines) + "\n") if lines else "", stats


def _fact_chunk(docs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    know = _KNOW
    assert know is not None
    lines = []
    stats: dict[str, Any] = {"documents": 0, "records": 0, "facts": 0, "chars": 0}
    for doc in docs:
        stats["documents"] += 1
        stats["chars"] += len(doc["text"])
        for rec in build_fact_records(doc, know):
            stats["records"] += 1
            stats["facts"] += len(rec["relations"])
            lines.append(dumps_record(rec))
    return ("\n".join(lines) + "\n") if lines else "", stats


def _documents(path: str, fmt: str, options: BuildOptions, text_field: str, skip: SkipCounter | None) -> Iterator[dict[str, Any]]:
    """Valid documents in ``--lang`` or ``--target-lang``; anything else is an error (or skipped)."""
    allowed = (options.lang, options.target_lang)
    for line, doc in iter_documents(path, fmt, options.lang, text_field, skip):
        if doc["lang"] not in allowed:
            msg = (
                f"{where(path, line)}: document language {doc['lang']!r} is neither --lang {options.lang!r} "
                f"nor --target-lang {options.target_lang!r}"
            )
            if skip is None:
                raise KbioxlmError(msg)
            skip.add(msg)
            continue
        yield doc


def run_build(
    options: BuildOptions,
    input_path: str,
    out: str,
    input_format: str = "jsonl",
    text_field: str = "text",
    num_workers: int = 1,
    skip_invalid: bool = False,
    balance: bool = True,
    max_total_switches: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run an entity or fact build; returns (and prints) the summary."""
    if options.lang == options.target_lang:
        raise KbioxlmError(f"--lang and --target-lang are both {options.lang!r}")
    if options.task not in ("entity", "fact"):
        raise KbioxlmError(f"unknown task {options.task!r}")
    t_start = time.perf_counter()
    # Fail fast on a missing KB or one without the languages, before reading the input.
    if not Path(options.kb).exists():
        raise KbioxlmError(f"{options.kb}: knowledge base not found (build it with `kbioxlm kb import ...`)")
    with KnowledgeBase(options.kb) as kb:
        kb.require_language(options.lang)
        kb.require_language(options.target_lang)
    # Pass 1: scan (validation + languages).
    skip = SkipCounter() if skip_invalid else None
    per_lang: dict[str, int] = {}
    for doc in _documents(input_path, input_format, options, text_field, skip):
        per_lang[doc["lang"]] = per_lang.get(doc["lang"], 0) + 1
    n_docs = sum(per_lang.values())
    langs = tuple(sorted(per_lang)) or (options.lang,)
    t_scan = time.perf_counter()
    _init_worker(options, langs)  # loads the KB in the parent (fails early on a bad KB)
    summary = Summary(options.task)  # throughput is measured from here: without scan and KB load
    summary.extra = {"scan_s": round(t_scan - t_start, 3), "kb_load_s": round(summary.t0 - t_scan, 3)}
    know = _KNOW
    assert know is not None
    remove_stale_temporaries(out)

    def docs() -> Iterator[dict[str, Any]]:
        return _documents(input_path, input_format, options, text_field, SkipCounter() if skip_invalid else None)

    def size(d: Any) -> int:
        return len(d[0]["text"]) if isinstance(d, tuple) else len(d["text"])

    workers = max(1, int(num_workers))
    quotas: array | None = None
    if options.task == "entity":
        both = len(per_lang) == 2
        if (balance and both) or max_total_switches is not None:
            caps = array("I")
            for res in ordered_map(_count_chunk, chunked(docs(), size=size), workers, _init_worker, (options, langs)):
                caps.extend(res)
            quotas = _allocate(caps, [d["lang"] for d in docs()], balance and both, max_total_switches)

    bar = tqdm(total=n_docs, unit="doc", desc=f"corpus {options.task}", disable=None if progress is None else not progress)
    with atomic_write(out) as fh:
        if options.task == "entity":
            q = quotas

            def items() -> Iterator[tuple[dict[str, Any], int]]:
                for i, d in enumerate(docs()):
                    yield d, (q[i] if q is not None else options.max_switches)

            results = ordered_map(_entity_chunk, chunked(items(), size=size), workers, _init_worker, (options, langs))
        else:
            results = ordered_map(_fact_chunk, chunked(docs(), size=size), workers, _init_worker, (options, langs))
        for text, stats in results:
            fh.write(text)
            summary.merge(stats)
            bar.update(stats["documents"])
    bar.close()
    summary.add("skipped", skip.count if skip else 0)
    summary.skip_examples = skip.examples if skip else []
    return summary.print(Path(out))


def _allocate(caps: array, langs: list[str], balance: bool, cap: int | None) -> array:
    """Per-document switch quotas: equal totals per direction (``balance``) and/or at most ``cap``."""
    totals: dict[str, int] = {}
    for c, lang in zip(caps, langs):
        totals[lang] = totals.get(lang, 0) + c
    budget = {lang: t for lang, t in totals.items()}
    if balance and totals:
        m = min(totals.values())
        budget = {lang: m for lang in totals}
    if cap is not None:
        budget = {lang: min(b, max(0, cap)) for lang, b in budget.items()}
    quotas = array("I", bytes(4 * len(caps)))
    cum: dict[str, int] = {lang: 0 for lang in totals}
    given: dict[str, int] = {lang: 0 for lang in totals}
    for i, (c, lang) in enumerate(zip(caps, langs)):
        total = totals[lang]
        if not total:
            continue
        cum[lang] += c
        upto = budget[lang] * cum[lang] // total
        quotas[i] = upto - given[lang]
        given[lang] = upto
    return quotas
