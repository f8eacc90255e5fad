"""Raw monolingual text sources → one Document JSONL per language.

``kbioxlm corpus entity|fact`` read one ``--input`` file; a language usually has several sources in
different formats (and the release's example files repeat the same abstracts), so the pipeline's
``docs.<lang>`` steps merge them into ``{"id", "lang", "text"}`` lines:

* JSON lines with a ``text`` field (the release's ``english_examples.json``; any Document JSONL);
* PubMedQA's ``ori_pqal.json`` (one JSON object keyed by PMID): ``CONTEXTS`` + ``LONG_ANSWER`` per
  PMID, as its SOURCE.md recommends for monolingual text;
* a JSON list of objects with ``text`` (CMeEE);
* text files: blank-line separated records (the medical dialogue file: question line + answer line)
  or one document per line.

Exact duplicate texts are dropped (the release's example files repeat 4 abstracts 26 times) and
counted. Everything is deterministic: file order, no sampling.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..corpus.readers import canonical_format
from ..errors import KbioxlmError, where
from ..io import atomic_write, dumps, iter_jsonl, open_text

DOC_FORMATS = ("auto", "jsonl", "pubmedqa", "json-list", "blocks", "lines")  # + the aliases cmeee, dialogue


def _norm(text: str) -> str:
    return " ".join(text.split())


def _read_json(path: Path) -> Any:
    try:
        with open_text(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise KbioxlmError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise KbioxlmError(f"{path}: not valid UTF-8 ({exc.reason})") from exc


def _first_char(path: Path) -> str:
    with open_text(path) as fh:
        try:
            head = fh.read(4096)
        except UnicodeDecodeError as exc:
            raise KbioxlmError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    return head.lstrip()[:1]


def _is_json_lines(path: Path) -> bool:
    """True when the first non-blank line is a complete JSON object on its own that is a record
    (not a one-line PubMedQA file: an object of objects with ``CONTEXTS``)."""
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                if not isinstance(first, dict):
                    return False
                values = list(first.values())
                return not (values and all(isinstance(v, dict) and "CONTEXTS" in v for v in values))
    return False


def detect_format(path: Path) -> str:
    """Guess a document format from the file's first bytes (``auto``)."""
    first = _first_char(path)
    if first == "{":
        return "jsonl" if _is_json_lines(path) else "pubmedqa"
    if first == "[":
        return "json-list"
    with open_text(path) as fh:
        text = fh.read(1 << 20)
    return "blocks" if "\n\n" in text.strip() else "lines"


def iter_source_texts(path: Path, fmt: str = "auto") -> Iterator[tuple[str, str]]:
    """Yield ``(local_id, text)`` for every document of one raw file."""
    if not path.is_file():
        raise KbioxlmError(f"{path}: no such corpus file")
    fmt = canonical_format(fmt)
    if fmt not in DOC_FORMATS:
        raise KbioxlmError(f"{path}: unknown format {fmt!r} (one of {', '.join(DOC_FORMATS)})")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "jsonl":
        for lineno, rec in iter_jsonl(path):
            text = rec.get("text")
            if not isinstance(text, str):
                raise KbioxlmError(f"{where(path, lineno)}: no string field 'text'")
            yield str(rec.get("id", lineno)), text
    elif fmt == "pubmedqa":
        data = _read_json(path)
        if not isinstance(data, dict):
            raise KbioxlmError(f"{path}: expected a JSON object keyed by PMID (PubMedQA ori_pqal.json)")
        for pmid, rec in data.items():
            if not isinstance(rec, dict) or not isinstance(rec.get("CONTEXTS"), list):
                raise KbioxlmError(f"{path}: record {pmid}: no CONTEXTS list (not a PubMedQA file?)")
            parts = [c for c in rec["CONTEXTS"] if isinstance(c, str)]
            if isinstance(rec.get("LONG_ANSWER"), str):
                parts.append(rec["LONG_ANSWER"])
            yield str(pmid), " ".join(parts)
    elif fmt == "json-list":
        data = _read_json(path)
        if not isinstance(data, list):
            raise KbioxlmError(f"{path}: expected a JSON list of objects with 'text'")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise KbioxlmError(f"{path}: item {i}: no string field 'text'")
            yield str(rec.get("id", i)), rec["text"]
    else:
        with open_text(path) as fh:
            try:
                content = fh.read()
            except UnicodeDecodeError as exc:
                raise KbioxlmError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
        if fmt == "blocks":
            blocks = re.split(r"\n\s*\n", content)
            for i, b in enumerate(blocks):
                lines = [ln.strip() for ln in b.splitlines() if ln.strip()]
                if lines:
                    yield str(i), "\n".join(lines)
        else:
            for i, line in enumerate(content.splitlines()):
                if line.strip():
                    yield str(i), line.strip()


def _entries(spec: Any, what: str, strict: bool = True) -> list[dict[str, Any]]:
    """Normalised ``{path, format, max}`` entries, globs expanded (``strict=False``: an unmatched
    glob stays as it is, so a plan can be shown before the data exists)."""
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not item.get("path"):
            raise KbioxlmError(f"{what}[{i}]: give a path or {{path, format, max}}")
        extra = set(item) - {"path", "format", "max"}
        if extra:
            raise KbioxlmError(f"{what}[{i}]: unknown key(s) {', '.join(sorted(extra))}")
        pattern = str(item["path"])
        if any(c in pattern for c in "*?["):  # sharded corpora: pubmed/part-*.jsonl (sorted)
            found = sorted(glob.glob(pattern))
            if not found and strict:
                raise KbioxlmError(f"{what}[{i}]: no file matches {pattern}")
            if not found:
                out.append(item)
            out += [{**item, "path": f} for f in found]
        else:
            out.append(item)
    return out


def document_inputs(spec: Any, what: str = "documents") -> list[Path]:
    return [Path(e["path"]) for e in _entries(spec, what, strict=False)]


def build_documents(
    spec: Any, lang: str, out: Path, max_docs: int | None = None, what: str = "documents", dedup: bool = True
) -> dict[str, Any]:
    """Convert every raw file of one language into one Document JSONL (streamed); returns a summary.

    Deduplication keeps a 16-byte digest per distinct text (about 100 bytes of memory each in a
    Python set: ~3 GB for PubMed's 30 M abstracts; pass ``dedup=False`` for corpora that are clean).
    """
    seen: set[bytes] = set()
    stats: dict[str, Any] = {"lang": lang, "files": {}, "duplicates": 0, "empty": 0, "documents": 0, "chars": 0}
    total = 0
    with atomic_write(out) as fh:
        for entry in _entries(spec, f"{what}.{lang}"):
            path = Path(entry["path"])
            cap = entry.get("max")
            n = 0
            for local_id, text in iter_source_texts(path, entry.get("format", "auto")):
                if (max_docs is not None and total >= max_docs) or (cap is not None and n >= int(cap)):
                    break
                text = unicodedata.normalize("NFC", text).strip()
                if not text:
                    stats["empty"] += 1
                    continue
                if dedup:
                    key = hashlib.blake2b(_norm(text).encode(), digest_size=16).digest()
                    if key in seen:
                        stats["duplicates"] += 1
                        continue
                    seen.add(key)
                fh.write(dumps({"id": f"{path.stem}:{local_id}", "lang": lang, "text": text}) + "\n")
                stats["chars"] += len(text)
                n += 1
                total += 1
            stats["files"][str(path)] = n
        if total == 0:
            raise KbioxlmError(f"{what}.{lang}: no documents in {', '.join(stats['files']) or 'the listed files'}")
    stats["documents"] = total
    return stats
