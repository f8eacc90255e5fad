"""Raw text sources → the record files the corpus builders read.

The corpus commands read Document JSONL (``{"id", "lang", "text"}``) and an aligned-pair file
(``{"id", "sent1", "sent2", "label"}``, ``sent1`` in the first language of the pair — the layout of
the release's ``pair_data.json`` and of the demo). Real corpora come in their own formats, so the
pipeline's ``docs.*`` steps convert them:

* JSON lines with a ``text`` field (the release's ``english_examples.json``; any Document JSONL);
* PubMedQA's ``ori_pqal.json`` (one JSON object keyed by PMID): ``CONTEXTS`` + ``LONG_ANSWER`` per
  PMID, as its SOURCE.md recommends for monolingual text;
* a JSON list of objects with ``text`` (CMeEE);
* text files: blank-line separated records (the medical dialogue file: question line + answer line)
  or one document per line;
* line-aligned parallel files (ParaMed): consecutive lines grouped into passage-sized pairs,
  Moses-tokenised text detokenised.

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

from ..errors import KbioxlmError, where
from ..io import atomic_write, dumps, iter_jsonl, open_text, write_jsonl
from ..schema import is_unspaced

DOC_FORMATS = ("auto", "jsonl", "pubmedqa", "json-list", "blocks", "lines")


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


def build_documents(spec: Any, lang: str, out: Path, max_docs: int | None = None, what: str = "documents",
                    dedup: bool = True) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------ pairs

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MOSES_ESCAPES = {"&amp;": "&", "&#124;": "|", "&lt;": "<", "&gt;": ">", "&apos;": "'", "&quot;": '"', "&#91;": "[", "&#93;": "]"}


def cjk_ratio(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(1 for c in chars if _CJK.match(c)) / len(chars) if chars else 0.0


def detokenize(text: str, lang: str) -> str:
    """Undo Moses tokenisation (ParaMed): ``@-@`` joins, escapes, spaces around punctuation, and
    the word-segmentation spaces of unspaced scripts.

    Hand-written rather than sacremoses: these few rules cover the one tokenised source the
    pipeline reads, and a dependency for them is not worth it.
    """
    for k, v in _MOSES_ESCAPES.items():
        text = text.replace(k, v)
    text = re.sub(r"\s*@([-/])@\s*", r"\1", text)
    text = re.sub(r"\s+([,.;:!?%)\]}])", r"\1", text)
    text = re.sub(r"([(\[{])\s+", r"\1", text)
    text = re.sub(r"\s+('s|'re|'ve|'ll|'d|'m|n't)\b", r"\1", text)
    if is_unspaced(lang):
        # segmentation spaces go; only a space between two Latin letters/digits stays ("NF k")
        text = re.sub(r"(?<![A-Za-z0-9])\s+|\s+(?![A-Za-z0-9])", "", text)
    return " ".join(text.split())


def _pair_entries(spec: list[Any], langs: tuple[str, str], what: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(spec):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            raise KbioxlmError(f"{what}[{i}]: give a pair file path, or {{{langs[0]}: F, {langs[1]}: F, group: N}}")
        allowed = {"path", "max", "group", "detokenize", *langs}
        extra = set(item) - allowed
        if extra:
            raise KbioxlmError(f"{what}[{i}]: unknown key(s) {', '.join(sorted(extra))}")
        if not item.get("path") and not (item.get(langs[0]) and item.get(langs[1])):
            raise KbioxlmError(f"{what}[{i}]: needs 'path' (JSON-lines pairs) or both {langs[0]!r} and {langs[1]!r} (line-aligned files)")
        out.append(item)
    return out


def pair_inputs(spec: list[Any], langs: tuple[str, str], what: str = "pairs") -> list[Path]:
    paths = []
    for e in _pair_entries(spec, langs, what):
        paths += [Path(e["path"])] if e.get("path") else [Path(e[langs[0]]), Path(e[langs[1]])]
    return paths


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise KbioxlmError(f"{path}: no such file")
    with open_text(path) as fh:
        try:
            return fh.read().splitlines()
        except UnicodeDecodeError as exc:
            raise KbioxlmError(f"{path}: not valid UTF-8 ({exc.reason})") from exc


def build_pairs(spec: list[Any], langs: tuple[str, str], out: Path, what: str = "pairs") -> dict[str, Any]:
    """Merge aligned-text sources into one pair file ``{"id", "sent1", "sent2", "label"}``.

    ``sent1`` is always in ``langs[0]``: pair files whose sides come in either order (the release's
    ``pair_data.json``: EN first in 259 pairs, ZH first in 241) are put in order when exactly one
    side is written in an unspaced script; otherwise the file's order is kept.
    """
    a, b = langs
    swap_by_script = is_unspaced(a) != is_unspaced(b)
    records: list[dict[str, Any]] = []
    stats: dict[str, Any] = {"sources": {}, "swapped": 0}
    for entry in _pair_entries(spec, langs, what):
        cap = entry.get("max")
        n = 0
        if entry.get("path"):
            path = Path(entry["path"])
            if not path.is_file():
                raise KbioxlmError(f"{path}: no such pair file")
            for lineno, rec in iter_jsonl(path):
                if cap is not None and n >= int(cap):
                    break
                s1, s2 = rec.get("sent1"), rec.get("sent2")
                if not isinstance(s1, str) or not isinstance(s2, str) or not s1.strip() or not s2.strip():
                    raise KbioxlmError(f"{where(path, lineno)}: a pair needs non-empty string fields 'sent1' and 'sent2'")
                if swap_by_script:
                    unspaced_first = cjk_ratio(s1) > cjk_ratio(s2)
                    if unspaced_first != is_unspaced(a):
                        s1, s2 = s2, s1
                        stats["swapped"] += 1
                records.append({"id": f"{path.stem}:{rec.get('id', lineno)}", "sent1": s1, "sent2": s2,
                                "label": str(rec.get("label", "link"))})
                n += 1
            stats["sources"][str(path)] = n
        else:
            pa, pb = Path(entry[a]), Path(entry[b])
            la, lb = _read_lines(pa), _read_lines(pb)
            if len(la) != len(lb):
                raise KbioxlmError(f"{pa} has {len(la)} lines but {pb} has {len(lb)}: line-aligned files must match")
            group = int(entry.get("group", 8))
            if group < 1:
                raise KbioxlmError(f"{what}: group must be at least 1")
            detok = bool(entry.get("detokenize", False))
            sep_a, sep_b = ("" if is_unspaced(a) else " "), ("" if is_unspaced(b) else " ")
            for start in range(0, len(la), group):
                if cap is not None and n >= int(cap):
                    break
                xa = [detokenize(x, a) if detok else x.strip() for x in la[start:start + group]]
                xb = [detokenize(x, b) if detok else x.strip() for x in lb[start:start + group]]
                ta, tb = sep_a.join(x for x in xa if x), sep_b.join(x for x in xb if x)
                if ta and tb:
                    records.append({"id": f"{pa.stem}:{start}", "sent1": ta, "sent2": tb, "label": "link"})
                    n += 1
            stats["sources"][f"{pa} + {pb}"] = n
    if not records:
        raise KbioxlmError(f"{what}: no aligned pairs in the listed sources")
    stats["pairs"] = write_jsonl(out, records)
    return stats
