"""Readers that turn the supported corpus formats into Documents ``{"id", "lang", "text"}``.

Every reader yields ``(line, document)`` so errors point at ``file:line``, also for the formats
that are one big JSON value (PubMedQA's ``ori_pqal.json``, CMeEE's list): those are decoded
record by record with ``json.JSONDecoder.raw_decode`` to know each record's line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError, where
from ..io import SkipCounter, read_text
from ..schema import check_lang

INPUT_FORMATS = ("jsonl", "pubmedqa", "json-list", "lines", "blocks")
FORMAT_ALIASES = {"cmeee": "json-list", "dialogue": "blocks"}
"""Older names of two formats, still accepted: the command line once named them after one corpus each,
while the pipeline's ``documents:`` entries used the generic names kept now."""


def canonical_format(name: str) -> str:
    """``cmeee`` → ``json-list``, ``dialogue`` → ``blocks``; other names as they are."""
    return FORMAT_ALIASES.get(name, name)


Doc = dict[str, Any]
_DECODER = json.JSONDecoder()
_CHECKED_LANGS: set[str] = set()  # language codes check_lang accepted (it runs per document)


def iter_documents(
    path: str | os.PathLike[str],
    fmt: str = "jsonl",
    default_lang: str | None = None,
    text_field: str = "text",
    skip: SkipCounter | None = None,
) -> Iterator[tuple[int, Doc]]:
    """Yield ``(line, {"id", "lang", "text"})`` for each valid document of ``path``.

    A bad record raises :class:`KbioxlmError` naming ``file:line`` (or, with ``skip``, is counted
    and skipped). ``id`` defaults to ``<file name>:<line>``; ``lang`` to ``default_lang``.
    """
    fmt = canonical_format(fmt)
    if fmt not in INPUT_FORMATS:
        raise KbioxlmError(f"unknown --input-format {fmt!r} (choose from {', '.join(INPUT_FORMATS)})")
    path = Path(path)
    raw = {
        "jsonl": _raw_jsonl,
        "pubmedqa": _raw_pubmedqa,
        "json-list": _raw_json_list,
        "lines": _raw_lines,
        "blocks": _raw_dialogue,
    }[fmt](path, text_field)
    for line, rec in raw:
        try:
            if isinstance(rec, Exception):
                raise rec
            yield line, _document(rec, path, line, default_lang, text_field)
        except ValueError as exc:
            msg = f"{where(path, line)}: {exc}"
            if skip is None:
                raise KbioxlmError(msg) from None
            skip.add(msg)


def _document(rec: Any, path: Path, line: int, default_lang: str | None, text_field: str) -> Doc:
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    if text_field not in rec:
        raise ValueError(f"missing field {text_field!r}")
    text = rec[text_field]
    if not isinstance(text, str):
        raise ValueError(f"field {text_field!r} must be str, got {type(text).__name__}")
    if not text or text.isspace():
        raise ValueError("empty text")
    doc_id = rec.get("id")
    if doc_id is None:
        doc_id = f"{path.name}:{line}"
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise ValueError(f"field 'id' must be str or int, got {type(doc_id).__name__}")
    lang = rec.get("lang", default_lang)
    if lang is None:
        raise ValueError("missing field 'lang' (or pass --lang)")
    if not isinstance(lang, str):
        raise ValueError(f"field 'lang' must be str, got {type(lang).__name__}")
    if lang not in _CHECKED_LANGS:
        check_lang(lang)
        _CHECKED_LANGS.add(lang)
    return {"id": doc_id, "lang": lang, "text": text}


def iter_text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 file, decoded line by line so that an encoding error is
    reported on its own line (a text-mode reader decodes ahead in blocks and would blame line 1)."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise KbioxlmError(f"{where(path, lineno)}: not valid UTF-8 ({exc.reason})") from None


_readline_loop = iter_text_lines


def _raw_jsonl(path: Path, text_field: str) -> Iterator[tuple[int, Any]]:
    scan = _DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__; typeshed omits it
    decode = _DECODER.decode
    for lineno, line in _readline_loop(path):
        if not line or line.isspace():
            continue
        try:
            # Fast path: the C scanner on a line holding one value and its newline; anything
            # else (leading space, trailing data, a parse error) goes through ``decode`` for
            # its exact behaviour and error message.
            try:
                obj, end = scan(line, 0)
            except (StopIteration, json.JSONDecodeError):
                obj, end = None, -1
            if end == len(line) or (end == len(line) - 1 and line[end] == "\n"):
                yield lineno, obj
            else:
                yield lineno, decode(line)
        except json.JSONDecodeError as exc:
            yield lineno, ValueError(f"malformed JSON ({exc.msg} at column {exc.colno})")


def _raw_lines(path: Path, text_field: str) -> Iterator[tuple[int, Any]]:
    for lineno, line in _readline_loop(path):
        if line.strip():
            yield lineno, {text_field: line.rstrip("\n")}


def _raw_dialogue(path: Path, text_field: str) -> Iterator[tuple[int, Any]]:
    """Records of consecutive non-blank lines separated by blank lines (question, answer, ...)."""
    buf: list[str] = []
    first = 0
    for lineno, line in _readline_loop(path):
        if line.strip():
            if not buf:
                first = lineno
            buf.append(line.rstrip("\n"))
        elif buf:
            yield first, {text_field: "\n".join(buf)}
            buf = []
    if buf:
        yield first, {text_field: "\n".join(buf)}


def _read_all(path: Path) -> str:
    return read_text(path)  # a bad byte is reported with its line


class _Scanner:
    """Walks one JSON document value by value, keeping track of line numbers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.s = _read_all(path)
        self.pos = 0
        self.line = 1
        self.dec = json.JSONDecoder()

    def skip_ws(self) -> None:
        s, i = self.s, self.pos
        while i < len(s) and s[i] in " \t\r\n":
            if s[i] == "\n":
                self.line += 1
            i += 1
        self.pos = i

    def expect(self, chars: str) -> str:
        self.skip_ws()
        if self.pos >= len(self.s) or self.s[self.pos] not in chars:
            got = self.s[self.pos] if self.pos < len(self.s) else "end of file"
            raise KbioxlmError(f"{where(self.path, self.line)}: malformed JSON (expected {chars!r}, got {got!r})")
        self.pos += 1
        return self.s[self.pos - 1]

    def value(self) -> tuple[int, Any]:
        self.skip_ws()
        line = self.line
        try:
            val, end = self.dec.raw_decode(self.s, self.pos)
        except json.JSONDecodeError as exc:
            raise KbioxlmError(f"{where(self.path, exc.lineno)}: malformed JSON ({exc.msg})") from None
        self.line += self.s.count("\n", self.pos, end)
        self.pos = end
        return line, val


def _raw_json_list(path: Path, text_field: str) -> Iterator[tuple[int, Any]]:
    """A JSON list of objects with ``text_field`` (CMeEE)."""
    sc = _Scanner(path)
    sc.expect("[")
    sc.skip_ws()
    if sc.pos < len(sc.s) and sc.s[sc.pos] == "]":
        return
    while True:
        yield sc.value()
        if sc.expect(",]") == "]":
            return


def _raw_pubmedqa(path: Path, text_field: str) -> Iterator[tuple[int, Any]]:
    """PubMedQA ``ori_pqal.json``: ``{pmid: {CONTEXTS: [...], LONG_ANSWER: str}}``; text = both joined."""
    sc = _Scanner(path)
    sc.expect("{")
    sc.skip_ws()
    if sc.pos < len(sc.s) and sc.s[sc.pos] == "}":
        return
    while True:
        line, key = sc.value()
        sc.expect(":")
        _, rec = sc.value()
        yield line, _pubmedqa_doc(key, rec, text_field)
        if sc.expect(",}") == "}":
            return


def _pubmedqa_doc(key: Any, rec: Any, text_field: str) -> Any:
    if not isinstance(rec, dict):
        return ValueError(f"record {key!r} must be an object")
    ctx = rec.get("CONTEXTS")
    if not isinstance(ctx, list) or not all(isinstance(c, str) for c in ctx):
        return ValueError(f"record {key!r}: field 'CONTEXTS' must be a list of str")
    ans = rec.get("LONG_ANSWER", "")
    if not isinstance(ans, str):
        return ValueError(f"record {key!r}: field 'LONG_ANSWER' must be str")
    return {"id": str(key), text_field: " ".join([*ctx, ans]).strip()}
