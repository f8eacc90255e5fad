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

Several target languages (``--target-langs zh:0.5,es:0.25,fr:0.25``): documents in ``--lang``
switch each chosen entity into a language drawn by weight among the targets its concept has a
name in (:func:`kbioxlm.corpus.entity.switch_entities`), and get each window's facts in one drawn
language (:func:`kbioxlm.corpus.fact.build_fact_records`); documents in a target language switch
into ``--lang``; balance then spreads one budget over every document language. The summary
counts switches per direction (``en->zh``, ``en->es``, ...) and, for facts, ``fact_langs``.
"""

from __future__ import annotations

import contextlib
import time
from array import array
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError, where
from ..io import SkipCounter, atomic_write
from ..kb.store import KnowledgeBase
from ..kb.split import warn_unknown
from ..progress import progress as progress_bar
from .entity import build_entity_line, build_entity_record, count_switchable
from .fact import build_fact_lines, build_fact_records
from .knowledge import BuildOptions, Knowledge
from .readers import iter_documents
from .runner import Summary, chunked, doc_seed, encode_record, ordered_write, remove_stale_temporaries
from .targets import format_target_langs

_KNOW: Knowledge | None = None
_KNOW_KEY: tuple | None = None


def _init_worker(options: BuildOptions, langs: tuple[str, ...]) -> None:
    """Load the KB once per process (a forked worker inherits the parent's copy).

    A Knowledge already loaded for the same KB and options is reused when it holds everything
    this build needs (matchers of ``langs``, relations if it builds facts); only its ``options``
    (which select the levels) are swapped."""
    global _KNOW, _KNOW_KEY
    if _KNOW is not None and _KNOW_KEY is not None:
        loaded, loaded_langs = _KNOW_KEY
        if (
            replace(loaded, task=options.task) == options
            and set(langs) <= set(loaded_langs)
            and ("fact" not in options.task.split("+") or "fact" in loaded.task.split("+"))
        ):
            _KNOW.options = options
            return
    _KNOW = Knowledge.load(options, langs)
    _KNOW_KEY = (options, langs)


def _count_chunk(docs: list[dict[str, Any]]) -> tuple[list[bytes], list[int]]:
    """How many switches each document of a chunk can take (no output: the count pass writes nothing)."""
    assert _KNOW is not None
    return [], [count_switchable(d, _KNOW) for d in docs]


def _levels(task: str) -> tuple[str, ...]:
    return tuple(task.split("+"))


def _build_chunk(items: list[tuple[dict[str, Any], int]]) -> tuple[list[bytes], dict[str, dict[str, Any]]]:
    """Entity and/or fact records of a chunk of ``(document, switch quota)``: the chunk's JSONL
    (UTF-8 bytes) of each level, in the order of :func:`_levels`, and its counts per level. Each
    document is matched once, whatever the levels."""
    know = _KNOW
    assert know is not None
    levels = _levels(know.options.task)
    do_entity = "entity" in levels
    do_fact = "fact" in levels
    seed = know.options.seed
    matchers = know.matchers
    e_lines: list[bytes] = []
    f_lines: list[bytes] = []
    n_docs = n_chars = 0
    e_records = e_entities = no_match = 0
    f_records = f_facts = 0
    switches: dict[str, int] = {}
    direction = {lang: f"{lang}->{know.other(lang)}" for lang in matchers}
    multi = know.options.lang if know.options.multi else None  # its documents draw their target languages
    fact_langs: dict[str, int] = {}
    entity_infos = know.entity_infos
    for doc, quota in items:
        n_docs += 1
        text = doc["text"]
        lang = doc["lang"]
        n_chars += len(text)
        spans = matchers[lang].find_spans(text)
        infos = entity_infos(lang, spans) if spans else []
        if do_entity:
            if not spans:
                no_match += 1
            elif lang == multi:  # switches counted per drawn language
                rec, k = build_entity_record(doc, know, doc_seed(seed, "entity", doc["id"]), quota, spans, infos)
                assert rec is not None
                e_records += 1
                e_entities += len(rec["entities"])
                for ent in rec["entities"]:
                    if ent["switched"]:
                        d = f"{lang}->{ent['lang']}"
                        switches[d] = switches.get(d, 0) + 1
                e_lines.append(encode_record(rec))
            else:
                line, k, n_ent = build_entity_line(doc, know, doc_seed(seed, "entity", doc["id"]), quota, spans, infos)
                assert line is not None  # spans matched
                e_records += 1
                e_entities += n_ent
                if k:
                    d = direction[lang]
                    switches[d] = switches.get(d, 0) + k
                e_lines.append(line)
        if do_fact and len(spans) > 1:
            if multi is not None:  # facts counted per language
                for rec_f, n_facts in build_fact_records(doc, know, spans, infos):
                    f_records += 1
                    f_facts += n_facts
                    fl = rec_f["relations"][0]["lang"]
                    fact_langs[fl] = fact_langs.get(fl, 0) + n_facts
                    f_lines.append(encode_record(rec_f))
            else:
                for line, n_facts in build_fact_lines(doc, know, spans, infos):
                    f_records += 1
                    f_facts += n_facts
                    f_lines.append(line)
    parts: list[bytes] = []
    counts: dict[str, dict[str, Any]] = {}
    if do_entity:
        stats = {
            "documents": n_docs,
            "records": e_records,
            "entities": e_entities,
            "chars": n_chars,
            "no_match": no_match,
            "switches": switches,
        }
        parts.append((b"\n".join(e_lines) + b"\n") if e_lines else b"")
        counts["entity"] = stats
    if do_fact:
        stats = {"documents": n_docs, "records": f_records, "facts": f_facts, "chars": n_chars}
        if multi is not None:
            stats["fact_langs"] = fact_langs
        parts.append((b"\n".join(f_lines) + b"\n") if f_lines else b"")
        counts["fact"] = stats
    return parts, counts


def _documents(
    path: str, fmt: str, options: BuildOptions, text_field: str, skip: SkipCounter | None
) -> Iterator[dict[str, Any]]:
    """Valid documents in ``--lang`` or a target language; anything else is an error (or skipped)."""
    allowed = options.languages
    for line, doc in iter_documents(path, fmt, options.lang, text_field, skip):
        if doc["lang"] not in allowed:
            msg = f"{where(path, line)}: document language {doc['lang']!r} is neither --lang {options.lang!r} " + (
                f"nor one of --target-langs {','.join(allowed[1:])}"
                if options.multi
                else f"nor --target-lang {options.target_lang!r}"
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
    if options.task not in ("entity", "fact"):
        raise KbioxlmError(f"unknown task {options.task!r}")
    return run_levels(
        options,
        input_path,
        {options.task: out},
        input_format,
        text_field,
        num_workers,
        skip_invalid,
        balance,
        max_total_switches,
        progress,
    )[options.task]


def run_levels(
    options: BuildOptions,
    input_path: str,
    outs: dict[str, str],
    input_format: str = "jsonl",
    text_field: str = "text",
    num_workers: int = 1,
    skip_invalid: bool = False,
    balance: bool = True,
    max_total_switches: int | None = None,
    progress: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Entity and/or fact builds of one input in one pass: ``outs`` maps ``"entity"``/``"fact"`` to
    output paths. Each document is read and matched once for all levels; every output is
    byte-identical to the one the single-level build writes. Returns (and prints) one summary per
    level (their seconds are those of the shared pass)."""
    levels: tuple[str, ...] = tuple(lv for lv in ("entity", "fact") if lv in outs)
    if not levels or set(outs) - set(levels):
        raise KbioxlmError(f"unknown or no levels {sorted(outs)!r} (choose from entity, fact)")
    if len({str(Path(p).resolve()) for p in outs.values()}) != len(outs):
        raise KbioxlmError("the entity and fact outputs must be different files")
    options = replace(options, task="+".join(levels))
    if options.lang in options.languages[1:]:
        raise KbioxlmError(
            f"--target-langs includes --lang {options.lang!r}"
            if options.multi
            else f"--lang and --target-lang are both {options.lang!r}"
        )
    t_start = time.perf_counter()
    # Fail fast on a missing KB or one without the languages, before reading the input.
    if not Path(options.kb).exists():
        raise KbioxlmError(f"{options.kb}: knowledge base not found (build it with `kbioxlm kb import ...`)")
    with KnowledgeBase(options.kb) as kb:
        for lang in options.languages:
            kb.require_language(lang)
    # Pass 1: scan (validation + languages).
    skip = SkipCounter() if skip_invalid else None
    per_lang: dict[str, int] = {}
    for doc in _documents(input_path, input_format, options, text_field, skip):
        per_lang[doc["lang"]] = per_lang.get(doc["lang"], 0) + 1
    n_docs = sum(per_lang.values())
    langs = tuple(sorted(per_lang)) or (options.lang,)
    t_scan = time.perf_counter()
    _init_worker(options, langs)  # loads the KB in the parent (fails early on a bad KB)
    summaries = {lv: Summary(lv) for lv in levels}  # throughput is measured from here: without scan and KB load
    t0 = summaries[levels[0]].t0
    for sm in summaries.values():
        sm.t0 = t0
        sm.extra = {"scan_s": round(t_scan - t_start, 3), "kb_load_s": round(t0 - t_scan, 3)}
        if options.multi:
            sm.extra["target_langs"] = format_target_langs(options.targets)
    know = _KNOW
    assert know is not None
    if options.exclude_concepts:
        warn_unknown(know.unknown_excluded, len(options.exclude_concepts))
        for sm in summaries.values():
            sm.extra["excluded_concepts"] = len(options.exclude_concepts)
            sm.extra["excluded_unknown"] = know.unknown_excluded
    for out in outs.values():
        remove_stale_temporaries(out)

    def docs() -> Iterator[dict[str, Any]]:
        return _documents(input_path, input_format, options, text_field, SkipCounter() if skip_invalid else None)

    def size(d: Any) -> int:
        return len(d[0]["text"]) if isinstance(d, tuple) else len(d["text"])

    workers = max(1, int(num_workers))
    quotas: array | None = None
    if "entity" in levels:
        both = len(per_lang) >= 2  # several document languages (at most two with a single target language)
        if (balance and both) or max_total_switches is not None:
            caps = array("I")
            for res in ordered_write(
                _count_chunk, chunked(docs(), size=size), [], workers, _init_worker, (options, langs)
            ):
                caps.extend(res)
            quotas = _allocate(caps, [d["lang"] for d in docs()], balance and both, max_total_switches)

    bar = progress_bar(total=n_docs, unit="doc", desc=f"corpus {options.task}", enabled=progress is not False)
    with contextlib.ExitStack() as stack:
        handles = {lv: stack.enter_context(atomic_write(outs[lv], "wb")) for lv in levels}
        q = quotas
        max_switches = options.max_switches

        def items() -> Iterator[tuple[dict[str, Any], int]]:
            if q is None:
                for d in docs():
                    yield d, max_switches
            else:
                for i, d in enumerate(docs()):
                    yield d, q[i]

        files = [handles[lv] for lv in levels]  # in the order of _levels(options.task)
        chunks = chunked(items(), size=size)
        for counts in ordered_write(_build_chunk, chunks, files, workers, _init_worker, (options, langs)):
            for lv, stats in counts.items():
                summaries[lv].merge(stats)
            bar.update(stats["documents"])
    bar.close()
    result: dict[str, dict[str, Any]] = {}
    for lv, sm in summaries.items():
        sm.add("skipped", skip.count if skip else 0)
        sm.skip_examples = skip.examples if skip else []
        result[lv] = sm.print(Path(outs[lv]))
    return result


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
