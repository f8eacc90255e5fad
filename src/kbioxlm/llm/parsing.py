"""Robust parsing of chat-model answers for NER, binary relations and multi-label classification.

Models answer in many shapes: JSON (often inside a ```json fence), markdown tables, bulleted or
numbered lists, ``Entity: X (Drug)`` lines, ``Drug: X, Y`` groupings, Chinese punctuation
(``（药物）``, ``：``, ``、``), yes/no or 是/否. The parsers accept all of these and never raise:
an answer they cannot read yields an empty prediction (counted as ``unparsed`` in the results).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..conll import join_tokens
from ..schema import is_unspaced
from ..tasks.readers import HOC_LABELS

# Chinese names of the HoC hallmarks (kbioxlm.tasks.readers.HOC_LABELS, same order): our own translations.
HOC_LABELS_ZH: tuple[str, ...] = (
    "激活侵袭和转移",
    "逃避免疫破坏",
    "细胞能量代谢",
    "实现复制永生",
    "逃避生长抑制",
    "基因组不稳定和突变",
    "诱导血管生成",
    "抵抗细胞死亡",
    "维持增殖信号",
    "促进肿瘤的炎症",
)
# Distinctive words that identify a hallmark even when the model paraphrases its name.
HOC_KEYWORDS: tuple[tuple[str, ...], ...] = (
    ("invasion", "metastasis", "侵袭", "转移"),
    ("immune destruction", "immune evasion", "免疫"),
    ("energetics", "energy metabolism", "cellular metabolism", "能量", "代谢"),
    ("replicative immortality", "immortality", "永生"),
    ("growth suppressor", "growth suppression", "生长抑制"),
    ("genomic instability", "genome instability", "mutation", "基因组", "突变"),
    ("angiogenesis", "血管生成"),
    ("cell death", "apoptosis", "细胞死亡", "凋亡"),
    ("proliferative signal", "proliferation signal", "proliferative signaling", "增殖信号"),
    ("inflammation", "炎症"),
)

# Type synonyms, lower-cased (model answers say "adverse effect", "药物", "chemical"...).
TYPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "ADE": (
        "ade",
        "adverse effect",
        "adverse drug event",
        "adverse drug effect",
        "adverse event",
        "adverse reaction",
        "side effect",
        "不良反应",
        "不良事件",
        "副作用",
        "不良效应",
    ),
    "Drug": ("drug", "drugs", "medication", "medicine", "药物", "药品", "药"),
    "Chemical": ("chemical", "chemicals", "compound", "化学物质", "化学品", "化合物"),
    "Disease": ("disease", "diseases", "disorder", "疾病", "病"),
    "Gene": ("gene", "genes", "protein", "基因", "蛋白"),
}

_NONE_RE = re.compile(r"^\s*(?:none|no entities|no entity|n/?a|nothing|无|没有|无实体|不存在)\W*\s*$", re.I)
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_BULLET_RE = re.compile(r"^\s*(?:[-*•·+]|\d+\s*[.)、．]|\(\d+\)|（\d+）)\s*")


def normalize_type(raw: str, types: Sequence[str]) -> str | None:
    """Map a model's type word onto one of ``types`` (exact, case-insensitive, then synonyms)."""
    t = raw.strip().strip("*_`\"'“”‘’[]【】").strip()
    if not t:
        return None
    low = t.lower()
    for ty in types:
        if low == ty.lower():
            return ty
    for ty in types:
        if low in TYPE_SYNONYMS.get(ty, ()):
            return ty
    for ty in types:  # "adverse drug event (ADE)" style
        if re.search(rf"\b{re.escape(ty.lower())}\b", low) or any(
            s in low for s in TYPE_SYNONYMS.get(ty, ()) if len(s) > 3
        ):
            return ty
    return None


def _clean_entity(text: str) -> str:
    t = text.strip().strip("*_`\"'“”‘’「」『』[]【】").strip()
    t = re.sub(r"^(?:entity|entities|实体|名称|name|text)\s*[:：]\s*", "", t, flags=re.I)
    return t.strip().rstrip("，,;；。.").strip()


def _from_json(obj: Any, types: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        # {"Drug": [...], "ADE": [...]} or {"entities": [...]}
        for k, v in obj.items():
            ty = normalize_type(str(k), types)
            if ty is not None and isinstance(v, list):
                out.extend((str(x), ty) for x in v if isinstance(x, (str, int, float)))
            elif isinstance(v, (list, dict)):
                out.extend(_from_json(v, types))
        if not out:
            ent = next((obj[k] for k in ("entity", "text", "name", "mention", "实体") if k in obj), None)
            typ = next((obj[k] for k in ("type", "label", "entity_type", "category", "类型") if k in obj), None)
            if isinstance(ent, str) and isinstance(typ, str):
                ty = normalize_type(typ, types)
                if ty is not None:
                    out.append((ent, ty))
    elif isinstance(obj, list):
        for x in obj:
            if isinstance(x, (dict, list)):
                out.extend(_from_json(x, types))
            elif isinstance(x, str):
                pair = _from_line(x, types)
                if pair:
                    out.append(pair)
    return out


def _try_json(answer: str) -> Any:
    for cand in [m.group(1) for m in _FENCE_RE.finditer(answer)] + [answer]:
        cand = cand.strip()
        for opener, closer in (("[", "]"), ("{", "}")):
            s, e = cand.find(opener), cand.rfind(closer)
            if s != -1 and e > s:
                try:
                    return json.loads(cand[s : e + 1])
                except ValueError:
                    continue
    return None


def _from_line(line: str, types: Sequence[str]) -> tuple[str, str] | None:
    """One ``entity (Type)`` / ``entity - Type`` / ``Type: entity`` / ``entity: Type`` line."""
    line = _BULLET_RE.sub("", line).strip().strip("*").strip()
    if not line:
        return None
    m = re.fullmatch(
        r"(?:entity|实体|名称|mention)\s*[:：]\s*(.+?)\s*[,，;；|]\s*(?:type|类型|类别|label)\s*[:：]\s*(.+?)\W*",
        line,
        flags=re.I,
    )
    if m:
        ty = normalize_type(m.group(2), types)
        return (_clean_entity(m.group(1)), ty) if ty is not None else None
    m = re.fullmatch(r"(.+?)\s*[(（\[【]\s*([^()（）]+?)\s*[)）\]】]\W*", line)
    if m:
        ty = normalize_type(m.group(2), types)
        if ty is not None:
            return _clean_entity(m.group(1)), ty
    for sep in (r"\s+[-–—]+\s+", r"\s*[:：]\s*", r"\s*[|]\s*", r"\s*,\s*type\s*[:：]?\s*"):
        parts = re.split(sep, line, maxsplit=1)
        if len(parts) == 2:
            a, b = parts
            tb, ta = normalize_type(b, types), normalize_type(_clean_entity(a), types)
            if tb is not None and _clean_entity(a):
                return _clean_entity(a), tb
            if ta is not None and _clean_entity(b) and not re.search(r"[,，、;；]", b):
                return _clean_entity(b), ta
    return None


def parse_entities(answer: str, types: Sequence[str]) -> list[tuple[str, str]]:
    """``[(entity text, type)]`` from a model answer, types restricted to ``types``; duplicates removed."""
    out: list[tuple[str, str]] = []
    if not answer or _NONE_RE.match(answer):
        return []
    obj = _try_json(answer)
    if obj is not None:
        out = _from_json(obj, types)
    if not out:
        out = _from_table(answer, types)
    if not out:
        for line in answer.splitlines():
            if not line.strip() or _NONE_RE.match(line):
                continue
            pair = _from_line(line, types)
            if pair is not None:
                out.append(pair)
                continue
            # "Drug: aspirin, ibuprofen" / "药物：阿司匹林、布洛芬"
            m = re.fullmatch(r"\s*(?:[-*•]\s*)?\**([^:：]{1,40}?)\**\s*[:：]\s*(.+)", line)
            if m:
                ty = normalize_type(m.group(1), types)
                if ty is not None and not _NONE_RE.match(m.group(2)):
                    out.extend((_clean_entity(x), ty) for x in re.split(r"[,，、;；]", m.group(2)) if _clean_entity(x))
    seen: set[tuple[str, str]] = set()
    uniq: list[tuple[str, str]] = []
    for ent, ty in out:
        ent = _clean_entity(str(ent))
        if ent and (ent, ty) not in seen:
            seen.add((ent, ty))
            uniq.append((ent, ty))
    return uniq


def _from_table(answer: str, types: Sequence[str]) -> list[tuple[str, str]]:
    rows = [ln.strip() for ln in answer.splitlines() if ln.strip().startswith("|")]
    if len(rows) < 2:
        return []
    out: list[tuple[str, str]] = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
            continue
        typed = [(i, normalize_type(c, types)) for i, c in enumerate(cells)]
        ty_idx = [i for i, t in typed if t is not None]
        if not ty_idx:
            continue
        i = ty_idx[-1]
        others = [c for j, c in enumerate(cells) if j != i and c and not re.fullmatch(r"\d+", c)]
        if others and normalize_type(others[0], types) is None:
            out.append((_clean_entity(others[0]), typed[i][1]))  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------------ binary (GAD)
_YES = re.compile(r"\b(?:yes|true|positive|associated|related)\b|^\s*1\s*$|是|有关|相关|存在", re.I)
_NO = re.compile(
    r"\b(?:no|false|negative|not associated|not related|unrelated|no association|none)\b|^\s*0\s*$|否|不是|无关|没有|不存在|不相关",
    re.I,
)


def parse_yes_no(answer: str) -> int | None:
    """1 for yes, 0 for no, None when neither can be found; the first decisive word wins."""
    if not answer:
        return None
    text = answer.strip()
    obj = _try_json(text)
    if isinstance(obj, dict):
        for v in obj.values():
            if isinstance(v, bool):
                return int(v)
            if isinstance(v, str):
                r = parse_yes_no(v)
                if r is not None:
                    return r
    y, n = _YES.search(text), _NO.search(text)
    if y and n:
        # "No, there is no association" vs "Yes, ... not ..." – whichever decisive word comes first.
        # "不是"/"没有" contain "是"/"有"-like tokens; a negative match overlapping the positive wins.
        if n.start() <= y.start() < n.end() or y.start() <= n.start() < y.end():
            return 0
        return 1 if y.start() < n.start() else 0
    if y:
        return 1
    if n:
        return 0
    return None


# --------------------------------------------------------------------------- multi-label (HoC)
def parse_labels(
    answer: str,
    names: Sequence[str] = HOC_LABELS,
    names_zh: Sequence[str] = HOC_LABELS_ZH,
    keywords: Sequence[Sequence[str]] = HOC_KEYWORDS,
) -> list[int] | None:
    """0/1 vector over ``names`` from an answer listing label names or their numbers (1-based).

    ``None`` when the answer says nothing recognisable (neither labels nor "none").
    """
    vec = [0] * len(names)
    if not answer:
        return None
    text = answer.strip()
    if _NONE_RE.match(text) or re.fullmatch(r"\W*(?:none|无)\W*(?:of (?:the|them).*)?", text, flags=re.I):
        return vec
    obj = _try_json(text)
    items: list[str]
    if isinstance(obj, list):
        items = [str(x) for x in obj]
    elif isinstance(obj, dict):
        items = [str(k) for k, v in obj.items() if v in (1, True, "yes", "1")] or [
            str(x) for x in obj.get("labels", [])
        ]
    else:
        items = [ln for ln in re.split(r"[\n;；]|,(?![^()]*\))", text) if ln.strip()]
    found = False
    for item in items:
        low = item.lower().replace("&", "and").replace("-", " ")
        low = re.sub(r"\s+", " ", low)
        hit = False
        for j, name in enumerate(names):
            if name in low or (j < len(names_zh) and names_zh[j] in item):
                vec[j], hit = 1, True
        if not hit:
            for j, kws in enumerate(keywords):
                if any(k in low for k in kws):
                    vec[j], hit = 1, True
        if not hit:
            m = re.match(r"^\s*(?:[-*•]\s*)?(?:label\s*|hallmark\s*|#)?(\d{1,2})(?!\d)", low)
            if m and 1 <= int(m.group(1)) <= len(names):
                vec[int(m.group(1)) - 1], hit = 1, True
        found = found or hit
    if not found:
        return vec if re.search(r"\bnone\b|无|没有", text, flags=re.I) else None
    return vec


# --------------------------------------------------------------------------- NER back to BIO
def locate_entities(tokens: Sequence[str], lang: str, entities: Sequence[tuple[str, str]]) -> list[str]:
    """BIO tags for ``tokens`` from entity strings: every occurrence, longest first, no overlaps.

    Matching is on the detokenized sentence, case-insensitively, with whitespace made flexible;
    for spaced languages a match must start and end on token boundaries (so "pain" does not tag
    the inside of "painful"). Each matched character range is then mapped to the tokens it covers.
    """
    text, offsets = join_tokens(list(tokens), lang)
    low = text.lower()
    starts = {s for s, _ in offsets}
    ends = {e for _, e in offsets}
    spaced = not is_unspaced(lang)
    taken = [False] * len(text)
    tags = ["O"] * len(tokens)
    order = sorted(set(entities), key=lambda et: (-len(et[0]), et[0], et[1]))
    for ent, ty in order:
        pat = r"\s*".join(re.escape(ch) for ch in ent.lower() if not ch.isspace())
        if not pat:
            continue
        for m in re.finditer(pat, low):
            s, e = m.start(), m.end()
            if spaced and (s not in starts or e not in ends):
                continue
            if any(taken[s:e]):
                continue
            idx = [i for i, (ts, te) in enumerate(offsets) if ts < e and te > s]
            if not idx or any(tags[i] != "O" for i in idx):
                continue
            for k in range(s, e):
                taken[k] = True
            for j, i in enumerate(idx):
                tags[i] = ("B-" if j == 0 else "I-") + ty
    return tags
