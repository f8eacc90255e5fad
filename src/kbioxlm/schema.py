"""Record schemas shared by all stages (docs/design.md, "Records"), with validators.

Offsets are Python character offsets into ``text`` so the alignment survives any tokenizer.
Validators raise ``ValueError`` with a short reason; :func:`kbioxlm.io.iter_jsonl` adds file:line.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

PASSAGE_LABELS: tuple[str, ...] = ("positive", "random", "context")
"""Passage-relation classes, in the order of the pair head's outputs."""

# Languages written without spaces between words: matched on characters, segmented by jieba etc.
UNSPACED_LANGS = frozenset({"zh", "ja", "th", "lo", "km", "my"})

# ISO 639-1 codes accepted as ``lang``; also common UMLS LAT codes are mapped in kb importers.
KNOWN_LANGS = frozenset(
    "af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he hi hr hu hy id is it "
    "ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms my ne nl no om or pa pl ps pt ro ru sa sd si sk sl so sq "
    "sr su sv sw ta te th tl tr ug uk ur uz vi xh yi zh".split()
)


class EntitySpan(TypedDict):
    start: int
    end: int
    concept: str
    lang: str
    switched: bool


class RelationSpan(TypedDict):
    start: int
    end: int
    rel: str
    lang: str
    head: int  # index into ``entities``
    tail: int


class Document(TypedDict):
    id: str
    lang: str
    text: str


class EntityRecord(Document):
    task: Literal["entity"]
    entities: list[EntitySpan]


class FactRecord(Document):
    task: Literal["fact"]
    entities: list[EntitySpan]
    relations: list[RelationSpan]


class PassageRecord(TypedDict):
    id: str
    task: Literal["passage"]
    text_a: str
    lang_a: str
    text_b: str
    lang_b: str
    label: Literal["positive", "random", "context"]


class AlignMention(TypedDict):
    lang: str
    text: str  # a short context (at most 200 characters) of the mention
    start: int  # the mention's span in ``text``
    end: int


class _AlignRecordBase(TypedDict):
    id: str
    task: Literal["align"]
    concept: str
    names: dict[str, list[str]]  # language -> names, the preferred one first (at least 2 languages)


class AlignRecord(_AlignRecordBase, total=False):
    """``kbioxlm corpus align``: one concept's names in several languages (docs/corpus.md)."""

    mentions: list[AlignMention]


class NERRecord(TypedDict):
    id: str
    lang: str
    tokens: list[str]
    tags: list[str]


class SeqClsRecord(TypedDict):
    id: str
    lang: str
    text: str
    label: int | list[int]


def is_unspaced(lang: str) -> bool:
    """True for scripts matched and masked on characters rather than space-delimited words."""
    return lang.split("-")[0].lower() in UNSPACED_LANGS


def check_lang(lang: Any, what: str = "lang") -> str:
    if not isinstance(lang, str) or lang.split("-")[0].lower() not in KNOWN_LANGS:
        raise ValueError(f"unknown language {lang!r} in field {what!r} (use an ISO 639-1 code such as 'en', 'zh')")
    return lang


def _field(rec: dict[str, Any], name: str, typ: type | tuple[type, ...]) -> Any:
    if name not in rec:
        raise ValueError(f"missing field {name!r}")
    val = rec[name]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise ValueError(f"field {name!r} must be {tname}, got {type(val).__name__}")
    return val


def validate_document(rec: dict[str, Any], default_lang: str | None = None) -> None:
    """A Document: ``id`` (str or int), ``text`` non-empty str, ``lang`` known (or a default given)."""
    _field(rec, "id", (str, int))
    text = _field(rec, "text", str)
    if not text.strip():
        raise ValueError("empty text")
    if "lang" in rec or default_lang is None:
        check_lang(_field(rec, "lang", str))


def _validate_spans(rec: dict[str, Any], key: str, extra: tuple[str, ...]) -> None:
    text = rec["text"]
    spans = _field(rec, key, list)
    for i, sp in enumerate(spans):
        if not isinstance(sp, dict):
            raise ValueError(f"{key}[{i}] must be an object")
        s, e = sp.get("start"), sp.get("end")
        if not isinstance(s, int) or not isinstance(e, int) or not (0 <= s < e <= len(text)):
            raise ValueError(f"{key}[{i}] has invalid span ({s!r}, {e!r}) for text of length {len(text)}")
        for name in extra:
            if name not in sp:
                raise ValueError(f"{key}[{i}] missing field {name!r}")


def validate_entity_record(rec: dict[str, Any]) -> None:
    validate_document(rec)
    _validate_spans(rec, "entities", ("concept", "lang"))


def validate_fact_record(rec: dict[str, Any]) -> None:
    validate_entity_record(rec)
    _validate_spans(rec, "relations", ("rel", "lang", "head", "tail"))


def validate_passage_record(rec: dict[str, Any]) -> None:
    for k in ("text_a", "text_b"):
        if not _field(rec, k, str).strip():
            raise ValueError(f"empty {k}")
    check_lang(_field(rec, "lang_a", str), "lang_a")
    check_lang(_field(rec, "lang_b", str), "lang_b")
    if _field(rec, "label", str) not in PASSAGE_LABELS:
        raise ValueError(f"label must be one of {PASSAGE_LABELS}, got {rec['label']!r}")


def validate_align_record(rec: dict[str, Any]) -> None:
    """An AlignRecord: ``id``, ``concept`` non-empty str; ``names`` a mapping of at least 2 known
    languages to non-empty lists of non-empty strings; optional ``mentions`` with valid spans."""
    if rec.get("task") != "align":
        raise ValueError(f"task must be 'align', got {rec.get('task')!r}")
    for k in ("id", "concept"):
        if not _field(rec, k, str):
            raise ValueError(f"empty {k}")
    names = _field(rec, "names", dict)
    if len(names) < 2:
        raise ValueError(f"field 'names' needs at least 2 languages, got {len(names)}")
    for lang, values in names.items():
        check_lang(lang, f"names.{lang}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"names[{lang!r}] must be a non-empty list of names")
        for v in values:
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"names[{lang!r}] holds an empty or non-string name: {v!r}")
    if "mentions" in rec:
        mentions = _field(rec, "mentions", list)
        for i, m in enumerate(mentions):
            if not isinstance(m, dict):
                raise ValueError(f"mentions[{i}] must be an object")
            check_lang(m.get("lang"), f"mentions[{i}].lang")
            text = m.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"mentions[{i}] has no text")
            s, e = m.get("start"), m.get("end")
            if (
                not isinstance(s, int)
                or not isinstance(e, int)
                or isinstance(s, bool)
                or isinstance(e, bool)
                or not 0 <= s < e <= len(text)
            ):
                raise ValueError(f"mentions[{i}] has invalid span ({s!r}, {e!r}) for text of length {len(text)}")


def validate_ner_record(rec: dict[str, Any]) -> None:
    tokens = _field(rec, "tokens", list)
    tags = _field(rec, "tags", list)
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    for t in tags:
        if not isinstance(t, str) or not (t == "O" or t[:2] in ("B-", "I-")):
            raise ValueError(f"invalid BIO tag {t!r}")


def validate_seqcls_record(rec: dict[str, Any]) -> None:
    _field(rec, "text", str)
    label = rec.get("label")
    if isinstance(label, list):
        if not all(v in (0, 1) for v in label):
            raise ValueError("multi-label 'label' must be a list of 0/1")
    elif not isinstance(label, int) or isinstance(label, bool):
        raise ValueError("field 'label' must be an int or a list of 0/1")


VALIDATORS = {
    "entity": validate_entity_record,
    "fact": validate_fact_record,
    "passage": validate_passage_record,
    "align": validate_align_record,
}


def validate_pretrain_record(rec: dict[str, Any]) -> None:
    """Any record the pretraining stage reads: entity/fact/passage/align by ``task``, else a Document."""
    task = rec.get("task")
    if task is None:
        validate_document(rec)
    elif task in VALIDATORS:
        VALIDATORS[task](rec)
    else:
        raise ValueError(f"unknown task {task!r}")
