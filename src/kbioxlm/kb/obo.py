"""OBO ontology importer (HPO and the like) with Babelon translation tables.

The OBO file is parsed with ``obonet`` (the field's OBO reader; it also drops obsolete terms), names
and synonyms come from ``name:``/``synonym:``, facts from ``is_a:`` and ``relationship:``, and
cross-references (``xref: UMLS:C0011849``) go to the separate ``xref`` table — identity links are not
facts, so they stay out of ``relation`` (the fact-corpus builder reads that table).

Babelon TSVs (columns named in a header, in any order: ``subject_id``, ``predicate_id``,
``translation_language``, ``translation_value``, ``translation_status``, …) add names in other
languages: only ``OFFICIAL`` rows by default, joined on ``subject_id`` (an ``alt_id`` resolves to its
term), ``rdfs:label`` rows become the preferred name, synonym predicates plain names.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import obonet

from ..errors import KbioxlmError
from ..io import SkipCounter
from .importing import (
    BATCH_SIZE,
    batched,
    importing,
    iter_stripped_lines,
    record_source,
    reject,
    report_skips,
    require_file,
)
from .languages import check_iso

log = logging.getLogger(__name__)

SYNONYM_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(EXACT|RELATED|BROAD|NARROW)?')
LABEL_PREDICATES = frozenset({"rdfs:label"})
SYNONYM_PREDICATES = frozenset(
    {"oboInOwl:hasExactSynonym", "oboInOwl:hasRelatedSynonym", "oboInOwl:hasSynonym", "IAO:0000118"}
)
BABELON_REQUIRED = ("subject_id", "translation_language", "translation_value", "translation_status")
DEFAULT_SCOPES = ("EXACT", "RELATED")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_synonym(raw: str) -> tuple[str, str] | None:
    """``'"Short stature" EXACT layperson []'`` → ``("Short stature", "EXACT")`` (scope defaults to RELATED,
    as the OBO 1.2 spec says)."""
    m = SYNONYM_RE.match(raw.strip())
    if not m:
        return None
    return _unescape(m.group(1)).strip(), m.group(2) or "RELATED"


STANZA_RE = re.compile(r"^\[([A-Za-z]+)\]\s*(?:!.*)?$")
STANZA_TYPES = ("Term", "Typedef", "Instance")
TAG_RE = re.compile(r"^([^\s:!][^:]*):(.*)$")


@dataclass
class OboScan:
    """What a line-by-line pass over an OBO file found (before ``obonet`` parses it)."""

    ids: dict[str, int] = field(default_factory=dict)  # stanza id -> line
    refs: list[tuple[int, str, str]] = field(default_factory=list)  # (line, tag, target id) of is_a/relationship
    n_lines: int = 0
    n_terms: int = 0


def scan_obo(path: Path) -> OboScan:
    """Check an OBO file's structure line by line; a problem is ``file:line: reason``.

    ``obonet`` reports neither lines nor truncation: a cut-off file (a failed download, a full
    disk) imports without a word, and a cut stanza header gives a two-line message. Caught here:
    bad UTF-8, a malformed stanza header or tag line, a stanza without ``id``, a ``relationship``
    that is not ``<type> <id>``, and a last line without its end of line (the file was cut).
    """
    scan = OboScan()
    stanza: tuple[int, str] | None = None  # (header line, type) of the open stanza
    has_id = True
    lineno = 0
    last = b"\n"
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read ({exc.strerror or exc})") from exc

    def close() -> None:
        if stanza is not None and not has_id:
            raise KbioxlmError(f"{path}:{stanza[0]}: [{stanza[1]}] stanza without an 'id:' line")

    prev_blank = True

    with fh:
        for lineno, raw in enumerate(fh, 1):
            last = raw
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise KbioxlmError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            text = line.strip()
            if not text:
                prev_blank = True
                continue
            if text.startswith("!"):
                continue
            blank_before, prev_blank = prev_blank, False
            if text.startswith("["):
                m = STANZA_RE.match(text)
                if not m or m.group(1) not in STANZA_TYPES:
                    cut = "" if raw.endswith(b"\n") else " (the file ends here: truncated?)"
                    raise KbioxlmError(
                        f"{path}:{lineno}: malformed stanza header {text[:40]!r}{cut}"
                        f" (expected one of {', '.join(f'[{t}]' for t in STANZA_TYPES)})"
                    )
                if not blank_before:
                    raise KbioxlmError(f"{path}:{lineno}: a stanza header must follow a blank line")
                close()
                stanza, has_id = (lineno, m.group(1)), False
                scan.n_terms += m.group(1) == "Term"
                continue
            m = TAG_RE.match(text)
            if not m:
                raise KbioxlmError(f"{path}:{lineno}: expected 'tag: value', got {text[:60]!r}")
            if stanza is None:
                continue  # header tags
            tag, value = m.group(1).strip(), _strip_obo_value(m.group(2))
            if tag == "id":
                has_id = True
                scan.ids.setdefault(value, lineno)
            elif tag == "is_a" and stanza[1] == "Term":
                scan.refs.append((lineno, tag, value.split()[0] if value.split() else ""))
            elif tag == "relationship" and stanza[1] == "Term":
                parts = value.split()
                if len(parts) != 2:
                    raise KbioxlmError(f"{path}:{lineno}: relationship must be '<type> <id>', got {value[:60]!r}")
                scan.refs.append((lineno, parts[0], parts[1]))
    scan.n_lines = lineno
    if lineno and not last.endswith(b"\n"):
        raise KbioxlmError(
            f"{path}:{lineno}: truncated OBO file: the last line has no end of line, so the last stanza"
            f"{f' ([{stanza[1]}] at line {stanza[0]})' if stanza else ''} would be imported partially"
        )
    close()
    if not scan.n_terms:
        raise KbioxlmError(f"{path}: no [Term] stanza (an empty file, or not an OBO ontology)")
    return scan


def _strip_obo_value(value: str) -> str:
    """A tag's value without a trailing ``! comment`` or ``{modifier}`` (as obonet reads it)."""
    value = re.sub(r"(?<!\\)\s!.*$", "", value)
    value = re.sub(r"\s(?<!\\)\{[^{}]*\}\s*$", "", value)
    return value.strip()


def _read_obo(path: Path) -> Any:
    try:
        return obonet.read_obo(str(path))
    except UnicodeDecodeError as exc:
        raise KbioxlmError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    except Exception as exc:  # obonet raises plain ValueError/TypeError on malformed stanzas
        raise KbioxlmError(
            f"{path}: malformed OBO ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from exc


def _header_value(value: Any) -> str | None:
    """obonet gives some header tags as lists (``default-namespace``), others as strings."""
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value else None


def _default_source(path: Path, graph: Any) -> str:
    name = _header_value(graph.graph.get("ontology")) or path.stem
    return "obo:" + re.sub(r"\.(obo|owl)$", "", name)


def import_obo(
    kb_path: str | os.PathLike[str],
    obo_path: str | os.PathLike[str],
    translations: list[str | os.PathLike[str]] | None = None,
    lang: str = "en",
    source: str | None = None,
    concept_type: str | None = None,
    drop: tuple[str, ...] = ("HP:0000001",),
    synonym_scopes: tuple[str, ...] = DEFAULT_SCOPES,
    accept_candidate: bool = False,
    skip: SkipCounter | None = None,
) -> dict[str, Any]:
    """Import one OBO file plus Babelon translation TSVs; returns the counts.

    ``drop`` lists ids left out entirely (HPO's root ``HP:0000001`` "All" is no concept worth
    matching in text, and no fact "X is a All" is worth learning). ``concept_type`` defaults to the
    term's ``namespace`` or the file's ``default-namespace``.
    """
    obo = require_file(obo_path, "OBO file")
    check_iso(lang, "--lang")
    scopes = {s.upper() for s in synonym_scopes}
    translations = list(translations or [])
    for t in translations:
        require_file(t, "translation file")
    scan = scan_obo(obo)
    graph = _read_obo(obo)
    dangling = [(line, tag, target) for line, tag, target in scan.refs if target not in scan.ids]
    if dangling:
        line, tag, target = dangling[0]
        log.warning(
            "%s:%d: %s target %s is not a term of this file (%d such reference(s), left out); is the file complete?",
            obo,
            line,
            tag,
            target,
            len(dangling),
        )
    src = source or _default_source(obo, graph)
    default_ns = _header_value(graph.graph.get("default-namespace"))
    dropped = set(drop)

    ids = sorted(n for n in graph.nodes if n not in dropped and graph.nodes[n].get("name"))
    idset = set(ids)
    alt_to_id: dict[str, str] = {}
    concepts, names, relations, xrefs = [], [], [], []
    for cid in ids:
        data = graph.nodes[cid]
        for alt in data.get("alt_id", []):
            alt_to_id[alt] = cid
        concepts.append((cid, concept_type or _header_value(data.get("namespace")) or default_ns, src))
        names.append((cid, lang, data["name"].strip(), 1, src))
        for raw in data.get("synonym", []):
            syn = parse_synonym(raw)
            if syn and syn[0] and syn[1] in scopes:
                names.append((cid, lang, syn[0], 0, src))
        for parent in data.get("is_a", []):
            parent = parent.split("!")[0].strip()
            if parent in idset:
                relations.append((cid, "is_a", parent, src))
        for rel in data.get("relationship", []):
            parts = rel.split()
            if len(parts) >= 2 and parts[1] in idset:
                relations.append((cid, parts[0], parts[1], src))
        for x in data.get("xref", []):
            ref = x.split()[0] if x.split() else ""
            db, sep, xid = ref.partition(":")
            if sep and db and xid:
                xrefs.append((cid, db, xid, src))

    counts: dict[str, Any] = {"concepts": len(ids), "relations": 0, "xrefs": 0, "translated_names": 0,
                              "translations_unmatched": 0, "translations_not_official": 0}  # fmt: skip
    with importing(kb_path, src) as kb:
        kb.add_concepts(concepts)
        for chunk in batched(names, BATCH_SIZE):
            kb.upsert_names(chunk)
        kb.add_relations(relations)
        kb.add_xrefs(xrefs)
        for tpath in translations:
            rows, unmatched, rejected = read_babelon(tpath, idset, alt_to_id, accept_candidate, skip)
            if unmatched > len(rows):
                log.warning(
                    "%s: %d of %d translations match no concept of %s; is the OBO file complete and the"
                    " right ontology?",
                    tpath,
                    unmatched,
                    unmatched + len(rows),
                    obo,
                )
            counts["translations_unmatched"] += unmatched
            counts["translations_not_official"] += rejected
            counts["translated_names"] += len(rows)
            kb.upsert_names([(cid, tl, text, pref, src) for cid, tl, text, pref in rows])
        c = kb.conn
        counts["relations"] = c.execute("SELECT count(*) FROM relation WHERE source = ?", (src,)).fetchone()[0]
        counts["xrefs"] = c.execute("SELECT count(*) FROM xref WHERE source = ?", (src,)).fetchone()[0]
        counts["names"] = dict(
            c.execute("SELECT lang, count(*) FROM name WHERE source = ? GROUP BY lang ORDER BY lang", (src,))
        )
        counts["source"] = src
        counts["skipped"] = skip.count if skip else 0
        record_source(kb, src, {"importer": "obo", "obo": str(obo), "translations": [str(t) for t in translations],
                                "data_version": _header_value(graph.graph.get("data-version")), **counts})  # fmt: skip
    report_skips(skip)
    return counts


def read_babelon(
    path: str | os.PathLike[str],
    ids: set[str],
    alt_to_id: dict[str, str] | None = None,
    accept_candidate: bool = False,
    skip: SkipCounter | None = None,
) -> tuple[list[tuple[str, str, str, int]], int, int]:
    """``([(concept_id, lang, text, is_preferred)], n_unmatched, n_not_accepted)`` from a Babelon TSV."""
    statuses = {"OFFICIAL", "CANDIDATE"} if accept_candidate else {"OFFICIAL"}
    alt_to_id = alt_to_id or {}
    header: list[str] | None = None
    col: dict[str, int] = {}
    rows: list[tuple[str, str, str, int]] = []
    unmatched = rejected = 0
    for lineno, line in iter_stripped_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if header is None:
            header = [h.strip() for h in fields]
            col = {h: i for i, h in enumerate(header)}
            missing = [h for h in BABELON_REQUIRED if h not in col]
            if missing:
                raise KbioxlmError(
                    f"{path}:{lineno}: not a Babelon TSV header (missing column(s) {', '.join(missing)})"
                )
            continue
        if len(fields) != len(header):
            reject(
                skip, path, lineno, f"expected {len(header)} TAB-separated columns as in the header, got {len(fields)}"
            )
            continue
        status = fields[col["translation_status"]].strip()
        value = fields[col["translation_value"]].strip()
        if status not in statuses or not value or value == "NA":
            rejected += 1
            continue
        pred = fields[col["predicate_id"]].strip() if "predicate_id" in col else "rdfs:label"
        if pred not in LABEL_PREDICATES and pred not in SYNONYM_PREDICATES:
            rejected += 1  # definitions, comments: not names
            continue
        tlang = fields[col["translation_language"]].strip()
        try:
            check_iso(tlang, "translation_language")
        except KbioxlmError as exc:
            reject(skip, path, lineno, str(exc))
            continue
        sid = fields[col["subject_id"]].strip()
        cid = sid if sid in ids else alt_to_id.get(sid)
        if cid is None:
            unmatched += 1  # obsolete or dropped term
            continue
        rows.append((cid, tlang, value, int(pred in LABEL_PREDICATES)))
    if header is None:
        raise KbioxlmError(f"{path}: empty Babelon file (no header)")
    return rows, unmatched, rejected
