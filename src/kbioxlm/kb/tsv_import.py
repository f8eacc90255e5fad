"""Generic importer for user terminologies: concepts, relations and relation names as TSV or JSONL.

Formats (also in ``docs/kb.md``); a file ending in ``.jsonl``/``.json`` is read as JSON lines,
anything else as TAB-separated text whose optional header line is recognised by its first column:

* concepts: ``id<TAB>type<TAB>lang<TAB>name[<TAB>preferred]`` — one name per line; ``preferred`` is
  ``1/0``, ``true/false``, ``yes/no`` or empty. JSONL: ``{"id", "type", "lang", "name", "preferred"}``
  or one line per concept ``{"id", "type", "names": {"en": ["preferred", "synonym", ...], ...}}``.
* relations: ``head<TAB>rel<TAB>tail`` (JSONL ``{"head", "rel", "tail"}``); both ends must be concepts
  of the KB (of any source).
* relation names: ``rel<TAB>lang<TAB>text`` (JSONL ``{"rel", "lang", "text"}``); they override the
  project's defaults and earlier user rows (later rows win).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from ..io import SkipCounter, is_jsonl_file, iter_jsonl
from ..schema import KNOWN_LANGS
from .importing import BATCH_SIZE, batched, importing, iter_tsv, record_source, reject, report_skips, require_file

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}


def _lang(value: Any) -> str:
    if not isinstance(value, str) or value.split("-")[0].lower() not in KNOWN_LANGS:
        raise ValueError(f"unknown language {value!r} (use an ISO 639-1 code such as 'en', 'zh')")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value.strip()


def _flag(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return 0
    s = str(value).strip().lower()
    if s in _TRUE:
        return 1
    if s in _FALSE:
        return 0
    raise ValueError(f"preferred must be 1/0, true/false or yes/no, got {value!r}")


def _rows(
    path: Path, n_cols: tuple[int, ...], header_first: str, skip: SkipCounter | None
) -> Iterator[tuple[int, dict[str, Any] | list[str]]]:
    """Records (JSONL) or cell lists (TSV, header line dropped) with their line numbers."""
    if is_jsonl_file(path):
        yield from iter_jsonl(path, skip=skip)
        return
    first = True
    for lineno, cells in iter_tsv(path, n_cols, skip):
        if first and cells[0].strip().lower() == header_first:
            first = False
            continue
        first = False
        yield lineno, [c.strip() for c in cells]


def read_concepts(path: Path, skip: SkipCounter | None) -> Iterator[tuple[str, str | None, str, str, int]]:
    """``(id, type, lang, name, preferred)`` per name, validated with file:line errors."""
    ctype: str | None
    for lineno, rec in _rows(path, (4, 5), "id", skip):
        try:
            if isinstance(rec, list):
                cid, ctype, lang, name = rec[:4]
                yield (
                    _text(cid, "id"),
                    ctype or None,
                    _lang(lang),
                    _text(name, "name"),
                    _flag(rec[4] if len(rec) > 4 else ""),
                )
                continue
            cid = _text(rec.get("id"), "id")
            ctype = rec.get("type") or None
            if ctype is not None and not isinstance(ctype, str):
                raise ValueError("type must be a string")
            if "names" in rec:
                names = rec["names"]
                if not isinstance(names, dict) or not names:
                    raise ValueError('names must be an object {"lang": ["name", ...]}')
                for lang, texts in names.items():
                    if isinstance(texts, str):
                        texts = [texts]
                    if not isinstance(texts, list) or not texts:
                        raise ValueError(f"names[{lang!r}] must be a non-empty list of strings")
                    for i, t in enumerate(texts):
                        yield cid, ctype, _lang(lang), _text(t, f"names[{lang!r}]"), int(i == 0)
            else:
                yield cid, ctype, _lang(rec.get("lang")), _text(rec.get("name"), "name"), _flag(rec.get("preferred"))
        except ValueError as exc:
            reject(skip, path, lineno, str(exc))


def read_triples(
    path: Path, keys: tuple[str, str, str], skip: SkipCounter | None
) -> Iterator[tuple[int, tuple[str, str, str]]]:
    """Three-column rows (relations or relation names) as ``(line, (a, b, c))``."""
    for lineno, rec in _rows(path, (3,), keys[0], skip):
        try:
            values = rec if isinstance(rec, list) else [rec.get(k) for k in keys]
            a, b, c = (_text(v, k) for v, k in zip(values, keys, strict=True))
            if keys[1] == "lang":
                _lang(b)
            yield lineno, (a, b, c)
        except ValueError as exc:
            reject(skip, path, lineno, str(exc))


def import_tsv(
    kb_path: str | os.PathLike[str],
    concepts: str | os.PathLike[str] | None = None,
    relations: str | os.PathLike[str] | None = None,
    relation_names: str | os.PathLike[str] | None = None,
    source: str | None = None,
    skip: SkipCounter | None = None,
) -> dict[str, Any]:
    """Import user files; ``source`` defaults to ``tsv:<file stem>`` of the concepts (or relations) file."""
    if not (concepts or relations or relation_names):
        raise KbioxlmError("kb import tsv: give --concepts, --relations and/or --relation-names")
    cpath = require_file(concepts, "concepts file") if concepts else None
    rpath = require_file(relations, "relations file") if relations else None
    npath = require_file(relation_names, "relation-names file") if relation_names else None
    main = cpath or rpath
    src = source or (f"tsv:{main.stem}" if main else None)
    counts: dict[str, Any] = {"source": src, "concepts": 0, "names": 0, "relations": 0, "relation_names": 0}

    with importing(kb_path, src) as kb:
        if cpath is not None:
            assert src is not None
            ids: set[str] = set()
            for chunk in batched(read_concepts(cpath, skip), BATCH_SIZE):
                new = [(cid, ctype, src) for cid, ctype, *_ in chunk if cid not in ids]
                ids.update(cid for cid, *_ in chunk)
                kb.add_concepts(dict.fromkeys(new))  # dict: keep order, drop repeats within the chunk
                kb.upsert_names((cid, lang, name, pref, src) for cid, _, lang, name, pref in chunk)
            counts["concepts"] = len(ids)
            counts["names"] = kb.conn.execute("SELECT count(*) FROM name WHERE source = ?", (src,)).fetchone()[0]
        if rpath is not None:
            assert src is not None
            known = kb.concept_ids()
            rels = []
            for lineno, (head, rel, tail) in read_triples(rpath, ("head", "rel", "tail"), skip):
                missing = [x for x in (head, tail) if x not in known]
                if missing:
                    reject(
                        skip, rpath, lineno, f"unknown concept id(s) {', '.join(missing)} (import their concepts first)"
                    )
                    continue
                rels.append((head, rel, tail, src))
            kb.add_relations(rels)
            counts["relations"] = kb.conn.execute("SELECT count(*) FROM relation WHERE source = ?", (src,)).fetchone()[
                0
            ]
        if npath is not None:
            rows = [t for _, t in read_triples(npath, ("rel", "lang", "text"), skip)]
            kb.set_relation_names(rows)
            counts["relation_names"] = len(rows)
        counts["skipped"] = skip.count if skip else 0
        if src is not None:
            record_source(
                kb, src, {"importer": "tsv", "concepts_file": str(cpath), "relations_file": str(rpath), **counts}
            )
    report_skips(skip)
    return counts
