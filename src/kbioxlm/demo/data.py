"""Demo data generated from the small bilingual resources the project ships.

The demo must run offline in minutes, so instead of real terminologies and corpora it expands
``resources/demo`` (about 70 concepts with English and Chinese names, 70 relations, sentence
templates written for the project) into the same file formats the real pipeline reads: a concept
TSV for ``kb import tsv``, monolingual Document JSONL, an aligned-article pair file for
``corpus passage`` and a tiny Drug/ADE NER set in both languages. Everything is seeded, so the
files are byte-identical on every run.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..io import write_jsonl

LANGS = ("en", "zh")


@dataclass(frozen=True)
class Concept:
    id: str
    type: str
    names: dict[str, str]


def _resource(name: str) -> str:
    return resources.files("kbioxlm.resources.demo").joinpath(name).read_text(encoding="utf-8")


def load_concepts() -> dict[str, Concept]:
    rows = csv.DictReader(_resource("concepts.tsv").splitlines(), delimiter="\t")
    return {r["id"]: Concept(r["id"], r["type"], {"en": r["en"], "zh": r["zh"]}) for r in rows}


def load_relations() -> list[tuple[str, str, str]]:
    rows = csv.DictReader(_resource("relations.tsv").splitlines(), delimiter="\t")
    return [(r["head"], r["rel"], r["tail"]) for r in rows]


def load_templates() -> dict:
    return json.loads(_resource("templates.json"))


def _cap(text: str) -> str:
    """Capitalise a sentence-initial English name ("aspirin is ..." → "Aspirin is ...")."""
    return text[:1].upper() + text[1:]


def articles(concepts: dict[str, Concept], relations: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    """One aligned EN/ZH article per drug and per disease with relations, sentence by sentence."""
    tpl = load_templates()["article"]
    by_head: dict[str, list[tuple[str, str]]] = {}
    for h, r, t in relations:
        by_head.setdefault(h, []).append((r, t))
    out = []
    for cid, c in concepts.items():
        rels = by_head.get(cid, [])
        if not rels:
            continue
        sents: dict[str, list[str]] = {"en": [], "zh": []}
        for lang in LANGS:
            name = c.names[lang]
            if c.type == "Drug":
                sents[lang].append(tpl["intro"][lang].format(drug=name))
            adrs = [concepts[t].names[lang] for r, t in rels if r == "causes"]
            for r, t in rels:
                other = concepts[t].names[lang]
                fill = {"drug": name, "disease": name, "adr": other, "site": other, "parent": other}
                if r == "may_treat":
                    fill["disease"] = other
                sents[lang].append(tpl[r][lang].format(**fill))
            if adrs:
                sents[lang].append(tpl["monitor"][lang].format(drug=name, adr=adrs[0]))
        sep = {"en": " ", "zh": ""}
        out.append({"id": cid, **{lang: sep[lang].join(_cap(s) for s in sents[lang]) for lang in LANGS}})
    return out


def ner_examples(concepts: dict[str, Concept], lang: str, n: int, seed: int, prefix: str) -> list[dict]:
    """Templated Drug/ADE sentences with BIO tags (English on spaces, Chinese one char per token)."""
    rng = random.Random(f"{seed}:{prefix}:{lang}")
    templates = load_templates()["ner"][lang]
    drugs = [c for c in concepts.values() if c.type == "Drug"]
    adrs = [c for c in concepts.values() if c.type == "Disease"]
    records = []
    for i in range(n):
        tpl = rng.choice(templates)
        drug, adr = rng.choice(drugs).names[lang], rng.choice(adrs).names[lang]
        tokens: list[str] = []
        tags: list[str] = []
        rest = tpl
        while rest:
            cut = min((rest.find(k), k) for k in ("{drug}", "{adr}") if rest.find(k) >= 0) if (
                "{drug}" in rest or "{adr}" in rest
            ) else (len(rest), "")
            pos, key = cut
            plain = rest[:pos]
            _add(tokens, tags, plain, "O", lang)
            if not key:
                break
            ent, etype = (drug, "Drug") if key == "{drug}" else (adr, "ADE")
            _add(tokens, tags, ent, etype, lang)
            rest = rest[pos + len(key):]
        if lang == "en" and tokens:
            tokens[0] = _cap(tokens[0])
        records.append({"id": f"{prefix}-{lang}-{i}", "lang": lang, "tokens": tokens, "tags": tags})
    return records


def _add(tokens: list[str], tags: list[str], text: str, etype: str, lang: str) -> None:
    pieces = text.split() if lang == "en" else [ch for ch in text if not ch.isspace()]
    for j, p in enumerate(pieces):
        tokens.append(p)
        tags.append("O" if etype == "O" else ("B-" if j == 0 else "I-") + etype)


def write_demo_data(out: Path, seed: int = 13) -> dict[str, Path]:
    """Write every demo input file under ``out``; returns their paths by role."""
    out.mkdir(parents=True, exist_ok=True)
    concepts, relations = load_concepts(), load_relations()
    paths = {
        "concepts": out / "kb_concepts.tsv",
        "relations": out / "kb_relations.tsv",
        "docs_en": out / "docs_en.jsonl",
        "docs_zh": out / "docs_zh.jsonl",
        "pairs": out / "article_pairs.jsonl",
        "ner_train_en": out / "ner_train_en.jsonl",
        "ner_dev_en": out / "ner_dev_en.jsonl",
        "ner_test_en": out / "ner_test_en.jsonl",
        "ner_train_zh": out / "ner_train_zh.jsonl",
        "ner_dev_zh": out / "ner_dev_zh.jsonl",
        "ner_test_zh": out / "ner_test_zh.jsonl",
    }
    from ..io import atomic_write

    with atomic_write(paths["concepts"]) as fh:
        fh.write("id\ttype\tlang\tname\tpreferred\n")
        for c in concepts.values():
            for lang in LANGS:
                fh.write(f"{c.id}\t{c.type}\t{lang}\t{c.names[lang]}\t1\n")
    with atomic_write(paths["relations"]) as fh:
        fh.write("head\trel\ttail\n")
        for h, r, t in relations:
            fh.write(f"{h}\t{r}\t{t}\n")
    arts = articles(concepts, relations)
    for lang in LANGS:
        write_jsonl(paths[f"docs_{lang}"], ({"id": f"{a['id']}-{lang}", "lang": lang, "text": a[lang]} for a in arts))
    write_jsonl(paths["pairs"], ({"id": a["id"], "sent1": a["en"], "sent2": a["zh"], "label": "link"} for a in arts))
    sizes = {"train": 240, "dev": 60, "test": 80}
    for lang in LANGS:
        for split, n in sizes.items():
            write_jsonl(paths[f"ner_{split}_{lang}"], ner_examples(concepts, lang, n, seed, split))
    return paths
