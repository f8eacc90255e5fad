"""Readers for the labelled downstream sets: the KBioXLM release files and the project's own JSONL.

Both NER formats end up as :class:`~kbioxlm.schema.NERRecord` (word/character tokens + IOB2 tags) and
both sequence-classification formats as :class:`~kbioxlm.schema.SeqClsRecord`, so the fine-tuning
code never cares where a set came from. Every malformed line is reported as ``file:line: reason``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..conll import iter_conll
from ..errors import KbioxlmError, where
from ..io import is_jsonl_file, iter_jsonl
from ..schema import NERRecord, SeqClsRecord, check_lang, validate_ner_record


def _is_han(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0xF900 <= cp <= 0xFAFF
        or 0x3000 <= cp <= 0x303F  # CJK punctuation
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms
    )


def detect_lang(text: str) -> str:
    """Guess ``zh`` or ``en`` from the script of the letters.

    The release only holds English and Chinese; Chinese text keeps Latin gene names and numbers
    (``C1772T``), so a text counts as Chinese once a fifth of its letters are Han characters.
    """
    han = latin = 0
    for ch in text:
        if _is_han(ch):
            han += 1
        elif ch.isalpha():
            latin += 1
    if han == 0 and latin == 0:
        return "en"
    return "zh" if han >= 0.2 * (han + latin) else "en"


# --------------------------------------------------------------------------------------------- NER


def read_ner(path: str | os.PathLike[str], lang: str | None = None, labelled: bool = True) -> list[NERRecord]:
    """Read a NER file: release CoNLL (``-DOCSTART-\\t<id>`` + ``token\\ttag`` lines) or NER JSONL.

    ``lang`` overrides the per-record language; when ``None`` it is taken from JSONL ``lang`` fields
    or detected from the script of each sentence. Tags are kept as written (the release's
    ``I-ADE`` right after ``B-Drug`` survives here; seqeval's default mode reads it as a new span and
    the trainer repairs it to ``B-ADE`` before the CRF sees it). ``labelled=False`` (text to tag):
    a sentence may come without tags (CoNLL token-only lines, JSONL without ``tags``); its
    ``tags`` is then ``None``.
    """
    p = Path(path)
    if not p.is_file():
        raise KbioxlmError(f"{p}: no such file")
    if lang is not None:
        try:
            check_lang(lang)
        except ValueError as exc:
            raise KbioxlmError(f"{p}: {exc}") from exc
    if is_jsonl_file(p):
        return _read_ner_jsonl(p, lang, labelled)
    return _read_conll(p, lang, labelled)


def _read_ner_jsonl(path: Path, lang: str | None, labelled: bool = True) -> list[NERRecord]:
    def validate(rec: dict[str, Any]) -> None:
        if not labelled and "tags" not in rec and isinstance(rec.get("tokens"), list):
            rec = {**rec, "tags": ["O"] * len(rec["tokens"])}
        validate_ner_record(rec)

    out: list[NERRecord] = []
    for lineno, rec in iter_jsonl(path, validate):
        if not rec["tokens"]:
            raise KbioxlmError(f"{where(path, lineno)}: empty token list")
        if not all(isinstance(t, str) and t for t in rec["tokens"]):
            raise KbioxlmError(f"{where(path, lineno)}: tokens must be non-empty strings")
        rid = str(rec.get("id", f"{path.name}:{lineno}"))
        rlang = lang or rec.get("lang")
        if rlang is None:
            rlang = detect_lang("".join(rec["tokens"]))
        else:
            try:
                check_lang(rlang)
            except ValueError as exc:
                raise KbioxlmError(f"{where(path, lineno)}: {exc}") from exc
        tags = list(rec["tags"]) if "tags" in rec else None
        out.append({"id": rid, "lang": rlang, "tokens": list(rec["tokens"]), "tags": tags})  # type: ignore[typeddict-item]
    return out


def _read_conll(path: Path, lang: str | None, labelled: bool = True) -> list[NERRecord]:
    """CoNLL with optional ``-DOCSTART-`` headers; a blank line or a header ends a sentence.

    Without DOCSTART headers (plain CoNLL) ids are ``<file name>:<sentence number>``.
    """
    out: list[NERRecord] = []
    tokens: list[str] = []
    tags: list[str] = []
    doc_id: str | None = None
    used_doc = False  # the DOCSTART id was already given to a sentence
    n_plain = 0

    tag_lines: list[int] = []

    def flush() -> None:
        nonlocal tokens, tags, used_doc, n_plain, tag_lines
        if tokens and not labelled:
            missing = [ln for ln, t in zip(tag_lines, tags) if not t]
            if missing and len(missing) < len(tags):
                raise KbioxlmError(
                    f"{where(path, missing[0])}: token without a tag in a sentence whose other "
                    "tokens have one (tag every token of a sentence, or none)"
                )
            if missing:
                tags = None  # type: ignore[assignment]
        tag_lines = []
        if tokens:
            if doc_id is not None and not used_doc:
                rid = doc_id
            elif doc_id is not None:
                rid = f"{doc_id}-{n_plain}"
            else:
                rid = f"{path.name}:{n_plain}"
            n_plain += 1
            used_doc = True
            rlang = lang or "und"  # set for the whole file below
            out.append({"id": rid, "lang": rlang, "tokens": tokens, "tags": tags})
        tokens, tags = [], []

    for row in iter_conll(path, tags_optional=not labelled):
        if row.kind == "blank":
            flush()
        elif row.kind == "doc":
            flush()
            doc_id = row.text or f"{path.name}:{row.lineno}"
            used_doc = False
            n_plain = 0
        else:
            tokens.append(row.text)
            tags.append(row.tag)
            tag_lines.append(row.lineno)
    flush()
    if not out:
        raise KbioxlmError(f"{path}: no sentences found (expected CoNLL 'token<TAB>tag' lines or NER JSONL)")
    if lang is None:
        # One language per file: a Chinese sentence made mostly of Latin letters (drug names,
        # untranslated residue) must still be joined without spaces like its neighbours.
        file_lang = _file_lang(r["tokens"] for r in out)
        for r in out:
            r["lang"] = file_lang
    return out


def _file_lang(token_lists: Any) -> str:
    sample: list[str] = []
    size = 0
    for toks in token_lists:
        sample.extend(toks)
        size += len(toks)
        if size > 20000:
            break
    return detect_lang("".join(sample))


# ------------------------------------------------------------------------------ sequence classification


RE_LABELS = (0, 1)
"""RE is binary (scored by positive-class F1): any other label is a data error, not a third class."""

# HoC labels in the column order of the BLURB/LinkBERT ``HoC_hf`` files the KBioXLM release uses
# (alphabetical). Verified on the release data: the words most associated with each column are
# invasion/EMT/metastasis (0), immunosuppression/NK (1), glycolysis/Warburg (2),
# senescence/telomerase (3), CDK/cyclin/arrest (4), strand breaks/DSB (5), VEGF/angiogenesis (6),
# TUNEL/Bax/apoptosis (7), EGFR/MAPK (8), inflammation/cytokines (9) — see docs/llm-baselines.md.
# DC (HoC) label names: saved fine-tuned models and the LLM baselines use them.
HOC_LABELS: tuple[str, ...] = (
    "activating invasion and metastasis",
    "avoiding immune destruction",
    "cellular energetics",
    "enabling replicative immortality",
    "evading growth suppressors",
    "genomic instability and mutation",
    "inducing angiogenesis",
    "resisting cell death",
    "sustaining proliferative signaling",
    "tumor promoting inflammation",
)


def _parse_label(value: Any, task: str | None, path: Path, lineno: int) -> int | list[int]:
    if isinstance(value, bool):
        raise KbioxlmError(f"{where(path, lineno)}: label must be an int, a digit string or a list of 0/1")
    if isinstance(value, list):
        if task == "re":
            raise KbioxlmError(f"{where(path, lineno)}: task 're' expects a single label, got a list")
        try:
            labels = [int(v) for v in value]
        except (TypeError, ValueError):
            raise KbioxlmError(f"{where(path, lineno)}: multi-label 'label' must be a list of 0/1") from None
        if not labels or any(v not in (0, 1) for v in labels) or any(isinstance(v, bool) for v in value):
            raise KbioxlmError(f"{where(path, lineno)}: multi-label 'label' must be a non-empty list of 0/1")
        return labels
    if task == "dc":
        raise KbioxlmError(f"{where(path, lineno)}: task 'dc' expects a list of 0/1 labels")
    if isinstance(value, int):
        label = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        label = int(value)
    else:
        raise KbioxlmError(
            f"{where(path, lineno)}: label must be an int, a digit string or a list of 0/1, got {value!r}"
        )
    if task == "re" and label not in RE_LABELS:
        raise KbioxlmError(f"{where(path, lineno)}: task 're' labels are 0 or 1 (binary relation), got {value!r}")
    return label


def find_tag_line(path: str | os.PathLike[str], entity_type: str) -> int | None:
    """Line of the first tag of ``entity_type`` in a NER file (CoNLL: the token's line; JSONL: the record's)."""
    p = Path(path)
    tags = {f"B-{entity_type}", f"I-{entity_type}"}
    if is_jsonl_file(p):
        for lineno, rec in iter_jsonl(p):
            if any(t in tags for t in rec.get("tags") or ()):
                return lineno
        return None
    for row in iter_conll(p):
        if row.kind == "token" and row.tag in tags:
            return row.lineno
    return None


def read_seqcls(
    path: str | os.PathLike[str], lang: str | None = None, task: str | None = None, labelled: bool = True
) -> list[SeqClsRecord]:
    """Read release JSON lines ``{"id","sentence","label"}`` or the project's ``{"id","lang","text","label"}``.

    GAD labels ``"0"``/``"1"`` become ints, HoC labels stay 10-dim 0/1 lists. ``task`` (``re``/``dc``)
    checks the label shape; all rows of a file must have the same shape (and list length).
    ``labelled=False`` (text to classify): a row may lack ``label``; its ``label`` is then ``None``.
    """
    p = Path(path)
    if not p.is_file():
        raise KbioxlmError(f"{p}: no such file")
    out: list[SeqClsRecord] = []
    width: int | None = None
    for lineno, rec in iter_jsonl(p):
        text = rec.get("text", rec.get("sentence"))
        if not isinstance(text, str) or not text.strip():
            raise KbioxlmError(f"{where(p, lineno)}: missing or empty 'text'/'sentence'")
        if "label" not in rec and labelled:
            raise KbioxlmError(f"{where(p, lineno)}: missing field 'label'")
        label = _parse_label(rec["label"], task, p, lineno) if "label" in rec else None
        w = len(label) if isinstance(label, list) else 0
        if label is None:
            pass
        elif width is None:
            width = w
        elif w != width:
            raise KbioxlmError(f"{where(p, lineno)}: label shape differs from the first row of the file")
        rlang = lang or rec.get("lang") or "und"  # "und": detected for the whole file below
        if rlang != "und":
            try:
                check_lang(rlang)
            except ValueError as exc:
                raise KbioxlmError(f"{where(p, lineno)}: {exc}") from exc
        rid = rec.get("id", f"{p.name}:{lineno}")
        # label None (unlabelled input) is outside SeqClsRecord's type, as NER's tags None above
        out.append({"id": str(rid), "lang": rlang, "text": text, "label": label})  # type: ignore[typeddict-item]
    if not out:
        raise KbioxlmError(f"{p}: no records found")
    undetected = [r for r in out if r["lang"] == "und"]
    if undetected:
        file_lang = detect_lang("".join(r["text"] for r in undetected[:200]))
        for r in undetected:
            r["lang"] = file_lang
    return out


def ner_records_to_jsonl_lines(records: list[NERRecord]) -> list[str]:
    """Serialise NER records in the project's JSONL form (used to save few-shot samples)."""
    return [json.dumps(r, ensure_ascii=False) for r in records]
