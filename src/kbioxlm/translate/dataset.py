"""Translate a labelled dataset: mark → translate (cached) → parse markers → QC → project → write.

Every input item ends in exactly one of two files: the translated dataset (accepted) or the
review file (rejected, with its reasons, the source and the raw translation). The summary counts
items per reason. Outputs are written atomically, in input order, so a re-run with a warm cache
produces byte-identical files.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chat.cache import Cache, cache_key
from ..chat.client import ChatClient
from ..chat.templates import lang_name, load_template
from ..errors import KbioxlmError, where
from ..io import atomic_write, dumps, iter_jsonl, write_json
from ..progress import progress as progress_bar
from ..tasks.readers import read_ner
from .backends import Backend
from .markers import PLACEHOLDER_RE, Marked, parse_markers, wrap_ner, wrap_text
from .projection import ProjectionError, project
from .qc import QCConfig, length_ratio_ok, residue_words

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One input record on its way through the pipeline."""

    id: str
    marked: Marked
    source: dict[str, Any]  # the input record (NER record, or the raw seqcls row)
    raw: str | None = None
    error: str | None = None
    fixed: bool = False
    reasons: list[tuple[str, str]] = field(default_factory=list)
    output: dict[str, Any] | None = None
    plain: str = ""


@dataclass
class Result:
    accepted: list[dict[str, Any]]
    review: list[dict[str, Any]]
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------- loading
def load_ner(path: str | os.PathLike[str], lang: str) -> list[dict[str, Any]]:
    """NER records through the shared reader (release CoNLL or NER JSONL)."""
    return [dict(r) for r in read_ner(path, lang)]


def load_seqcls_rows(path: str | os.PathLike[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(id, text field name, raw row)`` for release rows ``{"id","sentence","label"}`` or ``{"id","text","label"}``.

    Raw rows are kept so the output has exactly the input's fields (label strings stay strings)
    with only the text translated.
    """
    out = []
    for lineno, row in iter_jsonl(path):
        key = "sentence" if "sentence" in row else "text"
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise KbioxlmError(f"{where(path, lineno)}: missing or empty 'sentence'/'text'")
        if "label" not in row:
            raise KbioxlmError(f"{where(path, lineno)}: missing field 'label'")
        out.append((str(row.get("id", f"{Path(path).name}:{lineno}")), key, row))
    if not out:
        raise KbioxlmError(f"{path}: no records found")
    return out


def load_fixes(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """id → corrected translation (with markers for NER) from a review file whose ``fix`` was filled in."""
    if not path:
        return {}
    fixes: dict[str, str] = {}
    for lineno, row in iter_jsonl(path):
        fix = row.get("fix")
        if fix is None or fix == "":
            continue
        if not isinstance(fix, str) or "id" not in row:
            raise KbioxlmError(f"{where(path, lineno)}: a fix needs an 'id' and a string 'fix'")
        fixes[str(row["id"])] = fix
    return fixes


# ------------------------------------------------------------------------------------------- run
def translate_dataset(
    task: str,
    input_path: str | os.PathLike[str],
    source_lang: str,
    target_lang: str,
    backend: Backend,
    cache: Cache,
    qc: QCConfig | None = None,
    checker: ChatClient | None = None,
    prompt_dir: str | None = None,
    fixes: dict[str, str] | None = None,
    progress: bool = True,
) -> Result:
    """Run the whole pipeline in memory and return accepted records, review rows and a summary."""
    qc = qc or QCConfig()
    fixes = fixes or {}
    if task == "ner":
        items = []
        for rec in load_ner(input_path, source_lang):
            items.append(Item(str(rec["id"]), wrap_ner(rec["tokens"], rec["tags"], source_lang), rec))
        kind = "ner"
    elif task == "seqcls":
        items = [
            Item(rid, wrap_text(row[key]), {"row": row, "key": key}) for rid, key, row in load_seqcls_rows(input_path)
        ]
        kind = "text"
    else:
        raise KbioxlmError(f"unknown task {task!r} (use ner or seqcls)")

    version = backend.version(kind)
    keys = [cache_key(backend.name, backend.model, version, source_lang, target_lang, it.marked.text) for it in items]
    n_cached = 0
    todo: dict[str, str] = {}  # key -> text (unique texts only: duplicates are translated once)
    for it, key in zip(items, keys):
        if it.id in fixes:
            it.raw, it.fixed = fixes[it.id], True
            continue
        hit = cache.get(key)
        if hit is not None:
            it.raw = hit
            n_cached += 1
        else:
            todo.setdefault(key, it.marked.text)

    errors: dict[str, str] = {}
    if todo:
        todo_keys = list(todo)
        texts = [todo[k] for k in todo_keys]
        bar = _bar(len(texts), "translate", progress)

        def on_result(i: int, res: str | BaseException) -> None:
            k = todo_keys[i]
            if isinstance(res, BaseException):
                errors[k] = f"{type(res).__name__}: {res}"
            else:
                cache.put(
                    k,
                    res,
                    backend=backend.name,
                    model=backend.model,
                    prompt_version=version,
                    source_lang=source_lang,
                    target_lang=target_lang,
                    text=todo[k],
                )
            bar.update(1)

        backend.translate_many(texts, kind, source_lang, target_lang, on_result)
        bar.close()
        for it, key in zip(items, keys):
            if it.raw is None and not it.fixed:
                if key in errors:
                    it.error = errors[key]
                else:
                    it.raw = cache.get(key)

    for it in items:
        _check_item(it, task, source_lang, target_lang, backend, qc)

    n_check_requests = 0
    if checker is not None:
        n_check_requests = _llm_check(items, checker, cache, source_lang, target_lang, prompt_dir, progress)

    accepted = [it.output for it in items if not it.reasons and it.output is not None]
    review = [_review_row(it, source_lang, target_lang) for it in items if it.reasons]
    reasons = Counter(r for it in items for r in dict.fromkeys(r for r, _ in it.reasons))
    summary = {
        "task": task,
        "backend": backend.name,
        "model": backend.model,
        "prompt_version": version,
        "source_lang": source_lang,
        "target_lang": target_lang,
        "n_input": len(items),
        "n_accepted": len(accepted),
        "n_review": len(review),
        "reasons": dict(sorted(reasons.items())),
        "n_cached": n_cached,
        "n_translated": len(todo) - len(errors),
        "n_backend_errors": len(errors),
        "last_backend_error": _one_line(list(errors.values())[-1]) if errors else None,
        "n_fixes_used": sum(it.fixed for it in items),
        "n_check_requests": n_check_requests,
    }
    return Result(accepted, review, summary)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]


def _bar(total: int, desc: str, progress: bool) -> Any:
    return progress_bar(total=total, desc=desc, unit="item", enabled=progress, leave=False)


def _check_item(it: Item, task: str, src: str, tgt: str, backend: Backend, qc: QCConfig) -> None:
    """Fill ``it.reasons`` (rejections) or ``it.output`` (the accepted record)."""
    if it.error is not None:
        it.reasons.append(("backend_error", it.error))
        return
    raw = it.raw or ""
    if not raw.strip():
        it.reasons.append(("empty_translation", "the backend returned nothing"))
        return
    expected = [e.n for e in it.marked.entities]
    parsed = parse_markers(raw, expected)
    it.plain = parsed.text
    problems = list(parsed.problems)
    # Placeholders must come back exactly (same multiset, unchanged spelling).
    got = sorted(PLACEHOLDER_RE.findall(parsed.text))
    if got != sorted(it.marked.placeholders):
        problems.append(("placeholder_mismatch", f"expected {sorted(it.marked.placeholders)}, got {got}"))
    if backend.code_switch and not it.fixed:
        misses = [
            e.text
            for e in it.marked.entities
            if e.n in parsed.spans and parsed.text[slice(*parsed.spans[e.n])] == e.text
        ]
        if misses and not getattr(backend, "allow_partial", False):
            problems.append(("kb_no_entry", f"no {tgt} name for {misses[:5]}"))
        if it.marked.entities and len(misses) == len(it.marked.entities):
            problems.append(("kb_no_entry", "no entity was switched"))
    elif not it.fixed:
        if qc.check_residue:
            bad, detail = residue_words(
                parsed.text, list(parsed.spans.values()), it.marked.plain, src, tgt, qc.max_residue_words
            )
            if bad:
                problems.append(("source_residue", detail))
        if qc.check_ratio:
            ok, detail = length_ratio_ok(it.marked.plain, parsed.text, src, tgt, qc.ratio_factor)
            if not ok:
                problems.append(("length_ratio", detail))
    if problems:
        if it.fixed:
            problems.insert(0, ("fix_invalid", "the fix from --fixes fails the checks"))
        it.reasons.extend(problems)
        return
    if task == "ner":
        types = {e.n: e.type for e in it.marked.entities}
        spans = [(s, e, types[n]) for n, (s, e) in parsed.spans.items()]
        try:
            tokens, tags = project(parsed.text, spans, tgt)
        except ProjectionError as exc:
            it.reasons.append(("projection_failed", str(exc)))
            return
        if not tokens:
            it.reasons.append(("empty_translation", "no tokens after projection"))
            return
        it.output = {"id": it.id, "lang": tgt, "tokens": tokens, "tags": tags}
    else:
        row = dict(it.source["row"])
        row[it.source["key"]] = parsed.text
        it.output = row


def _llm_check(
    items: list[Item], checker: ChatClient, cache: Cache, src: str, tgt: str, prompt_dir: str | None, progress: bool
) -> int:
    """Second pass (paper, section 4): ask an LLM whether each accepted translation omits or changes anything."""
    tpl = load_template("translate_check", prompt_dir)
    todo = [it for it in items if not it.reasons and not it.fixed and it.output is not None]
    keys = [
        cache_key("check", str(checker.model), tpl.version, src, tgt, dumps({"s": it.marked.plain, "t": it.plain}))
        for it in todo
    ]
    answers: dict[str, str] = {}
    need: dict[str, list[dict[str, str]]] = {}
    for it, k in zip(todo, keys):
        hit = cache.get(k)
        if hit is not None:
            answers[k] = hit
        elif k not in need:
            need[k] = tpl.render(
                source_language=lang_name(src),
                target_language=lang_name(tgt),
                source=it.marked.plain,
                translation=it.plain,
            )
    need_keys = list(need)
    bar = _bar(len(need_keys), "llm check", progress)

    def on_result(i: int, res: str | BaseException) -> None:
        if not isinstance(res, BaseException):
            cache.put(
                need_keys[i],
                res,
                backend="check",
                model=str(checker.model),
                prompt_version=tpl.version,
                source_lang=src,
                target_lang=tgt,
            )
            answers[need_keys[i]] = res
        bar.update(1)

    if need_keys:
        checker.chat_many([need[k] for k in need_keys], on_result=on_result)
    bar.close()
    for it, k in zip(todo, keys):
        ans = answers.get(k)
        if ans is None:
            it.reasons.append(("llm_flagged", "the check request failed; review by hand"))
        elif not _check_ok(ans):
            it.reasons.append(("llm_flagged", ans.strip()[:300]))
    return len(need_keys)


def _check_ok(answer: str) -> bool:
    a = answer.strip().lstrip("*#>- ").upper()
    return a.startswith("OK") and "PROBLEM" not in a


def _review_row(it: Item, src: str, tgt: str) -> dict[str, Any]:
    return {
        "id": it.id,
        "reason": it.reasons[0][0],
        "reasons": list(dict.fromkeys(r for r, _ in it.reasons)),
        "details": [d for _, d in it.reasons],
        "source_lang": src,
        "target_lang": tgt,
        "source": it.marked.text,
        "raw": it.raw,
        "entities": [{"n": e.n, "type": e.type, "text": e.text} for e in it.marked.entities],
        "fix": "",
    }


# ------------------------------------------------------------------------------------------ write
def write_outputs(
    result: Result,
    task: str,
    out: str | os.PathLike[str] | None,
    review: str | os.PathLike[str],
    summary: str | os.PathLike[str] | None = None,
) -> None:
    """Atomic writes. NER: CoNLL like the release for ``.txt``/``.conll``, NER JSONL otherwise.
    ``out=None`` writes only the review file and the summary (a failed run)."""
    if out is not None:
        _write_dataset(result, task, Path(out))
    with atomic_write(review) as fh:
        for row in result.review:
            fh.write(dumps(row) + "\n")
    if summary:
        write_json(summary, result.summary)


def _write_dataset(result: Result, task: str, outp: Path) -> None:
    with atomic_write(outp) as fh:
        if task == "ner" and outp.suffix in (".txt", ".conll"):
            for rec in result.accepted:
                fh.write(f"-DOCSTART-\t{rec['id']}\n\n")
                for tok, tag in zip(rec["tokens"], rec["tags"]):
                    fh.write(f"{tok}\t{tag}\n")
                fh.write("\n")
        else:
            for rec in result.accepted:
                fh.write(dumps(rec) + "\n")
