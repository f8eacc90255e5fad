"""UMLS Metathesaurus importer (RRF files: MRCONSO, MRREL, MRSTY).

Streams the files (the full MRCONSO is ~15 GB) and writes in batches inside one transaction (see
:mod:`kbioxlm.kb.importing`). Concept ids are the bare CUIs (``C0011849``), so HPO's
``xref: UMLS:C…`` cross-references point straight at them.

Semantics, as documented in ``docs/kb.md``:

* MRCONSO rows with ``SUPPRESS`` in ``O``, ``E``, ``Y`` are dropped; ``--languages`` filters on ``LAT``
  (mapped to ISO codes: ENG→en, CHI→zh, …), ``--sources`` on ``SAB``. A name is preferred when
  ``TS=P``, ``STT=PF`` and ``ISPREF=Y`` (the concept's preferred atom in that language).
* MRSTY gives ``concept.type``: the first semantic type (``STY``) listed for the CUI.
* MRREL: suppressed rows dropped, ``--sources`` applies to the relation's ``SAB``, only relations
  between two different imported concepts are kept. UMLS reads a row as "CUI2 *REL* CUI1" (REL is
  the "relationship of the second concept to the first"), so the stored fact is
  ``(head=CUI2, rel, tail=CUI1)``; the label is ``RELA`` if present, else ``REL``; ``isa`` is
  stored as ``is_a`` to share its relation names with the ontologies.
* A translation table adds names in a language UMLS lacks (see :func:`load_translations`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from ..io import SkipCounter
from .importing import BATCH_SIZE, iter_stripped_lines, iter_tsv, record_source, reject, report_skips, require_file
from .importing import importing
from .languages import LAT_TO_ISO, check_iso, parse_umls_languages

log = logging.getLogger(__name__)

SUPPRESSED = frozenset({"O", "E", "Y"})
MRCONSO_FIELDS = 18
MRREL_FIELDS = 16
MRSTY_FIELDS = 6

_CUI_HEADERS = {"cui", "concept_id", "id"}
_LANG_HEADERS = {"lang", "language"}
_NAME_HEADERS = {"name", "text", "target_name", "translation"}
_EN_HEADERS = {"english_name", "english", "en", "source_name", "source"}
_TARGET_HEADERS = {"target_name", "target", "translation", "name"}


@dataclass
class Translations:
    """A loaded translation table: by concept id, and by (case-folded) English name."""

    by_cui: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    by_english: dict[str, list[str]] = field(default_factory=dict)
    lang: str = "zh"  # target language of the by-English form

    def __len__(self) -> int:
        return sum(map(len, self.by_cui.values())) + sum(map(len, self.by_english.values()))


def load_translations(
    path: str | os.PathLike[str], target_lang: str = "zh", skip: SkipCounter | None = None
) -> Translations:
    """Read a translation TSV in either documented layout.

    * ``cui<TAB>lang<TAB>name`` — a name for one concept id in a given language;
    * ``english_name<TAB>target_name`` — every imported concept with that English name (compared
      case-insensitively) gets ``target_name`` in ``target_lang``.

    A header line naming the columns (``cui lang name`` / ``english_name target_name``) is detected
    and skipped; without one the layout follows the column count of the first row.
    """
    check_iso(target_lang, "--translation-lang")
    out = Translations(lang=target_lang)
    layout: str | None = None
    for lineno, row in iter_tsv(path, (2, 3), skip):
        if layout is None:
            low = [c.strip().lower() for c in row]
            if len(low) == 3 and low[0] in _CUI_HEADERS and low[1] in _LANG_HEADERS and low[2] in _NAME_HEADERS:
                layout = "cui"
                continue
            if len(low) == 2 and low[0] in _EN_HEADERS and low[1] in _TARGET_HEADERS:
                layout = "english"
                continue
            layout = "cui" if len(row) == 3 else "english"
        if (layout == "cui") != (len(row) == 3):
            reject(
                skip, path, lineno, f"expected {3 if layout == 'cui' else 2} columns like the first row, got {len(row)}"
            )
            continue
        cells = [c.strip() for c in row]
        if not all(cells):
            reject(skip, path, lineno, "empty column")
            continue
        if layout == "cui":
            cui, lang, name = cells
            try:
                check_iso(lang, "lang")
            except KbioxlmError as exc:
                reject(skip, path, lineno, str(exc))
                continue
            out.by_cui.setdefault(cui, []).append((lang, name))
        else:
            en, target = cells
            out.by_english.setdefault(en.casefold(), []).append(target)
    return out


def _split_rrf(line: str, n_fields: int) -> list[str] | None:
    """``|``-separated fields; RRF lines end with ``|``, hence ``n_fields + 1`` parts, the last empty."""
    parts = line.split("|")
    if len(parts) != n_fields + 1 or parts[-1] != "":
        return None
    return parts


def import_umls(
    kb_path: str | os.PathLike[str],
    rrf_dir: str | os.PathLike[str],
    languages: str | None = None,
    sources: str | None = None,
    translations: str | os.PathLike[str] | None = None,
    translation_lang: str = "zh",
    source: str = "umls",
    skip: SkipCounter | None = None,
) -> dict[str, Any]:
    """Import a UMLS RRF directory into ``kb_path`` under ``source``; returns the counts."""
    d = Path(rrf_dir)
    if not d.is_dir():
        raise KbioxlmError(f"{d}: UMLS RRF directory not found")
    conso = require_file(d / "MRCONSO.RRF", "MRCONSO.RRF")
    lats = parse_umls_languages(languages)
    sabs = {s.strip() for s in sources.split(",") if s.strip()} if sources else None
    trans = load_translations(translations, translation_lang, skip) if translations else None
    counts: dict[str, Any] = dict.fromkeys(
        ("concepts", "names", "suppressed", "other_source", "other_language", "unmapped_language",
         "translated_names", "translations_unmatched", "relations", "relations_dropped", "typed"),
        0,
    )  # fmt: skip

    with importing(kb_path, source) as kb:
        cuis: set[str] = set()
        concept_buf: list[tuple[str, str | None, str]] = []
        name_buf: list[tuple[str, str, str, int, str]] = []
        english_hits: set[tuple[str, str]] = set()

        def flush() -> None:
            kb.add_concepts(concept_buf)
            kb.upsert_names(name_buf)
            concept_buf.clear()
            name_buf.clear()

        for lineno, line in iter_stripped_lines(conso, "MRCONSO"):
            if not line:
                continue
            f = _split_rrf(line, MRCONSO_FIELDS)
            if f is None:
                reject(skip, conso, lineno, f"expected {MRCONSO_FIELDS} |-terminated fields (MRCONSO)")
                continue
            cui, lat, ts, stt, ispref, sab, text, suppress = f[0], f[1], f[2], f[4], f[6], f[11], f[14].strip(), f[16]
            if not cui or not text:
                reject(skip, conso, lineno, "empty CUI or STR")
                continue
            if suppress in SUPPRESSED:
                counts["suppressed"] += 1
                continue
            if sabs is not None and sab not in sabs:
                counts["other_source"] += 1
                continue
            if trans is not None and lat == "ENG" and trans.by_english:
                for target in trans.by_english.get(text.casefold(), ()):
                    english_hits.add((cui, target))
            if lats is not None and lat not in lats:
                counts["other_language"] += 1
                continue
            lang = LAT_TO_ISO.get(lat)
            if lang is None:
                counts["unmapped_language"] += 1
                continue
            if cui not in cuis:
                cuis.add(cui)
                concept_buf.append((cui, None, source))
            preferred = int(ts == "P" and stt == "PF" and ispref == "Y")
            name_buf.append((cui, lang, text, preferred, source))
            if len(name_buf) >= BATCH_SIZE:
                flush()
        flush()

        if trans is not None:
            seen_lang: set[tuple[str, str]] = set()
            for cui, items in sorted(trans.by_cui.items()):
                if cui not in cuis:
                    counts["translations_unmatched"] += len(items)
                    continue
                for lang, name in items:
                    name_buf.append((cui, lang, name, int((cui, lang) not in seen_lang), source))
                    seen_lang.add((cui, lang))
            matched_english = {t for _, t in english_hits}
            counts["translations_unmatched"] += sum(
                1 for targets in trans.by_english.values() for t in targets if t not in matched_english
            )
            for cui, target in sorted(english_hits):
                if cui not in cuis:
                    cuis.add(cui)
                    concept_buf.append((cui, None, source))
                name_buf.append((cui, trans.lang, target, int((cui, trans.lang) not in seen_lang), source))
                seen_lang.add((cui, trans.lang))
            counts["translated_names"] = len(name_buf)
            flush()
        counts["concepts"] = len(cuis)
        counts["names"] = kb.conn.execute("SELECT count(*) FROM name WHERE source = ?", (source,)).fetchone()[0]

        sty = d / "MRSTY.RRF"
        if sty.is_file():
            type_buf: list[tuple[str, str, str]] = []
            for lineno, line in iter_stripped_lines(sty, "MRSTY"):
                if not line:
                    continue
                f = _split_rrf(line, MRSTY_FIELDS)
                if f is None:
                    reject(skip, sty, lineno, f"expected {MRSTY_FIELDS} |-terminated fields (MRSTY)")
                    continue
                if f[0] in cuis and f[3]:
                    # "AND type IS NULL": the first STY listed for a CUI wins, without a CUI→type dict.
                    type_buf.append((f[3], f[0], source))
                if len(type_buf) >= BATCH_SIZE:
                    kb.conn.executemany(
                        "UPDATE concept SET type = ? WHERE id = ? AND source = ? AND type IS NULL", type_buf
                    )
                    type_buf.clear()
            kb.conn.executemany("UPDATE concept SET type = ? WHERE id = ? AND source = ? AND type IS NULL", type_buf)
            counts["typed"] = kb.conn.execute(
                "SELECT count(*) FROM concept WHERE source = ? AND type IS NOT NULL", (source,)
            ).fetchone()[0]
        else:
            log.warning("%s: no MRSTY.RRF, concepts get no semantic type", d)

        rel_path = d / "MRREL.RRF"
        if rel_path.is_file():
            rel_buf: list[tuple[str, str, str, str]] = []
            for lineno, line in iter_stripped_lines(rel_path, "MRREL"):
                if not line:
                    continue
                f = _split_rrf(line, MRREL_FIELDS)
                if f is None:
                    reject(skip, rel_path, lineno, f"expected {MRREL_FIELDS} |-terminated fields (MRREL)")
                    continue
                cui1, rel, cui2, rela, sab, suppress = f[0], f[3], f[4], f[7], f[10], f[14]
                if (
                    suppress in SUPPRESSED
                    or (sabs is not None and sab not in sabs)
                    or cui1 == cui2
                    or cui1 not in cuis
                    or cui2 not in cuis
                    or not (rela or rel)
                ):
                    counts["relations_dropped"] += 1
                    continue
                label = rela or rel
                rel_buf.append((cui2, "is_a" if label == "isa" else label, cui1, source))
                if len(rel_buf) >= BATCH_SIZE:
                    kb.add_relations(rel_buf)
                    rel_buf.clear()
            kb.add_relations(rel_buf)
            counts["relations"] = kb.conn.execute(
                "SELECT count(*) FROM relation WHERE source = ?", (source,)
            ).fetchone()[0]
        else:
            log.warning("%s: no MRREL.RRF, no relations imported", d)

        counts["skipped"] = skip.count if skip else 0
        record_source(kb, source, {"importer": "umls", "rrf_dir": str(d), **counts})
    report_skips(skip)
    return counts
