"""ICD-10 importer: the WHO XML (English) with Chinese category and block names from two TSVs.

Input shapes (see ``../shared/data/kb/icd10/SOURCE.md``): the XML nests
``<item type="chapter|block|category|subcategory">`` elements, each with ``<name>`` (the code) and
``<description>``; blocks nest inside blocks and subcategories inside subcategories, so ``is_a``
comes from the nesting itself. The Chinese ``disease.csv`` (``code<TAB>disease``, codes possibly
marked ``+``/``*``) names categories; ``disease_catalog.csv``
(``code_lower_bound<TAB>code_upper_bound<TAB>level<TAB>catalog``) names chapters (level 1, matched by
the code range the chapter spans) and blocks (level 2, matched on ``lower-upper``).

Concept ids: ``ICD10:A00`` (categories), ``ICD10:A00.0`` (subcategories), ``ICD10:A00-A09``
(blocks), ``ICD10:chapter:I`` (chapters).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from ..io import SkipCounter
from .importing import importing, iter_tsv, record_source, reject, report_skips, require_file

PREFIX = "ICD10:"


def concept_id(kind: str, code: str) -> str:
    return f"{PREFIX}chapter:{code}" if kind == "chapter" else f"{PREFIX}{code}"


def _parse_xml(path: Path) -> list[tuple[str, str, str, str | None, str, str]]:
    """``[(kind, code, description, parent_id, first_code, last_code)]`` in document order.

    ElementTree handles the BOM and CRLF; ``first_code``/``last_code`` are the code range an item
    spans (for matching chapter ranges), taken from its own name or its descendants.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise KbioxlmError(f"{path}:{line}: malformed XML ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    out: list[tuple[str, str, str, str | None, str, str]] = []

    def walk(elem: ET.Element, parent: str | None) -> tuple[str, str] | None:
        span: tuple[str, str] | None = None
        for item in elem.findall("item"):
            kind = item.get("type") or ""
            code = (item.findtext("name") or "").strip()
            desc = " ".join((item.findtext("description") or "").split())
            if kind not in {"chapter", "block", "category", "subcategory"} or not code or not desc:
                raise KbioxlmError(
                    f"{path}: <item type={kind!r}> without a known type, <name> or <description> (code {code!r})"
                )
            cid = concept_id(kind, code)
            index = len(out)
            out.append((kind, code, desc, parent, "", ""))
            inner = walk(item, cid)
            if kind == "chapter":
                first, last = inner or ("", "")
            elif kind == "block" and "-" in code:
                first, last = code.split("-", 1)
            else:
                first = last = code
            out[index] = (kind, code, desc, parent, first, last)
            span = (span[0], last) if span else (first, last)
        return span

    walk(root, None)
    if not out:
        raise KbioxlmError(f"{path}: no <item> elements (not an ICD-10 XML)")
    return out


def import_icd10(
    kb_path: str | os.PathLike[str],
    xml_path: str | os.PathLike[str],
    zh_categories: str | os.PathLike[str] | None = None,
    zh_blocks: str | os.PathLike[str] | None = None,
    source: str = "icd10",
    concept_type: str = "Disease",
    skip: SkipCounter | None = None,
) -> dict[str, Any]:
    """Import the ICD-10 XML plus optional Chinese names; returns the counts (incl. unmatched rows)."""
    xml = require_file(xml_path, "ICD-10 XML")
    items = _parse_xml(xml)
    by_code = {(kind, code): concept_id(kind, code) for kind, code, *_ in items}
    block_ids = {code: cid for (kind, code), cid in by_code.items() if kind == "block"}
    cat_ids = {code: cid for (kind, code), cid in by_code.items() if kind == "category"}
    chapter_by_range = {
        (first, last): concept_id("chapter", code) for kind, code, _, _, first, last in items if kind == "chapter"
    }

    zh_rows: list[tuple[str, str]] = []
    counts: dict[str, Any] = {"concepts": len(items), "zh_categories_unmatched": [], "zh_blocks_unmatched": []}
    if zh_categories:
        first = True
        for lineno, (code, name) in iter_tsv(require_file(zh_categories, "Chinese category file"), 2, skip):
            if first and code.strip().lower() == "code":
                first = False
                continue
            first = False
            clean = code.strip().rstrip("+*")
            if not clean or not name.strip():
                reject(skip, zh_categories, lineno, "empty code or name")
                continue
            cid = cat_ids.get(clean)
            if cid is None:
                counts["zh_categories_unmatched"].append(clean)
            else:
                zh_rows.append((cid, name.strip()))
    if zh_blocks:
        first = True
        for lineno, row in iter_tsv(require_file(zh_blocks, "Chinese block file"), 4, skip):
            lo, hi, level, name = (c.strip() for c in row)
            if first and level.lower() == "level":
                first = False
                continue
            first = False
            if level not in {"1", "2"} or not name:
                reject(skip, zh_blocks, lineno, f"level must be 1 or 2 and the name non-empty (got level {level!r})")
                continue
            cid = chapter_by_range.get((lo, hi)) if level == "1" else block_ids.get(f"{lo}-{hi}")
            if cid is None:
                counts["zh_blocks_unmatched"].append(f"{lo}-{hi}")
            else:
                zh_rows.append((cid, name))

    with importing(kb_path, source) as kb:
        kb.add_concepts((cid, concept_type, source) for cid in by_code.values())
        kb.upsert_names((concept_id(kind, code), "en", desc, 1, source) for kind, code, desc, *_ in items)
        kb.upsert_names((cid, "zh", name, 1, source) for cid, name in zh_rows)
        kb.add_relations(
            (concept_id(kind, code), "is_a", parent, source) for kind, code, _, parent, *_ in items if parent
        )
        c = kb.conn
        counts["relations"] = c.execute("SELECT count(*) FROM relation WHERE source = ?", (source,)).fetchone()[0]
        counts["names"] = dict(
            c.execute("SELECT lang, count(*) FROM name WHERE source = ? GROUP BY lang ORDER BY lang", (source,))
        )
        counts["skipped"] = skip.count if skip else 0
        record_source(kb, source, {"importer": "icd10", "xml": str(xml), **counts})
    report_skips(skip)
    return counts
