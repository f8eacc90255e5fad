"""The demo's synthetic bilingual world, generated deterministically from ``resources/demo/lexicon.json``.

The demo has to show the method's mechanism offline, in minutes, on a tiny model, so its data is
designed for it (and is synthetic: the "facts" are written for the project, not clinical truth):

* **Compositional concepts.** 144 diseases are the compositions of 12 organ roots and 12
  pathologies, named in English and Chinese the way real terms are (``gastric ulcer`` /
  ``胃溃疡``, ``renal failure`` / ``肾衰竭``); 12 drugs treat or cause some of them, and some
  diseases progress to others. The bilingual KB (concepts, names, relations) links the languages.
* **Monolingual text in one language each.** Every concept has a short article, written once in
  English and once in Chinese; a document mentions concepts only in its own language, so nothing
  in the monolingual text tells a model which English word goes with which Chinese one.
* **Held-out concepts.** ``kbioxlm kb split`` holds some concepts out; the corpus builders never
  match, switch or write facts about them, and the aligned sentences for the passage level drop
  every sentence naming one (:func:`write_parallel`). A held-out disease is a *new composition*
  of an organ and a pathology the KB anchors through other diseases, as ``gastric haemorrhage``
  is for a model that saw ``gastric ulcer`` and ``renal haemorrhage``.
* **A small NER set** (Drug / ADE, BIO tags): English train/dev and a Chinese test split for the
  zero-shot EN→ZH protocol (both languages are written for every split).

Everything is a pure function of the lexicon and ``seed``: the files are byte-identical on every
run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..io import atomic_write, write_jsonl

LANGS = ("en", "zh")
HOLDOUT_FRACTION = 0.2  # of the diseases, held out of every pretraining record
NER_SIZES = {"train": 240, "dev": 60, "test": 200}
DOC_SENTENCES = 2  # sentences per monolingual document (short records: many per batch)


@dataclass(frozen=True)
class Concept:
    id: str
    type: str
    names: dict[str, str]
    parts: tuple[str, str] | None = None  # (organ root, pathology) of a disease


@dataclass(frozen=True)
class Sentence:
    """One sentence of an article in both languages and the concepts it names."""

    en: str
    zh: str
    concepts: tuple[str, ...]


@dataclass
class World:
    concepts: dict[str, Concept]
    relations: list[tuple[str, str, str]]
    relation_names: dict[str, dict[str, str]]
    articles: dict[str, list[Sentence]] = field(default_factory=dict)  # concept id -> its article


def load_lexicon() -> dict[str, Any]:
    text = resources.files("kbioxlm.resources.demo").joinpath("lexicon.json").read_text(encoding="utf-8")
    return json.loads(text)


def _cap(text: str) -> str:
    """Capitalise a sentence-initial English name ("aspirin is ..." → "Aspirin is ...")."""
    return text[:1].upper() + text[1:]


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def disease_id(root: str, pathology: str) -> str:
    return f"dis-{root}-{pathology}"


def build_world(lexicon: dict[str, Any] | None = None) -> World:
    """Concepts, relations and one bilingual article per concept."""
    lex = lexicon or load_lexicon()
    roots = {r["key"]: r for r in lex["roots"]}
    paths = {p["key"]: p for p in lex["pathologies"]}
    concepts: dict[str, Concept] = {}
    for r in lex["roots"]:
        for p in lex["pathologies"]:
            cid = disease_id(r["key"], p["key"])
            concepts[cid] = Concept(
                cid, "Disease", {"en": f"{r['en']} {p['en']}", "zh": r["zh"] + p["zh"]}, (r["key"], p["key"])
            )
    for d in lex["drugs"]:
        cid = f"drug-{d['key']}"
        concepts[cid] = Concept(cid, "Drug", {"en": d["en"], "zh": d["zh"]})

    def dis(key: str) -> str:
        root, _, path = key.partition("-")
        cid = disease_id(root, path)
        if cid not in concepts:
            raise ValueError(f"lexicon: unknown disease {key!r}")
        return cid

    relations: list[tuple[str, str, str]] = []
    for d in lex["drugs"]:
        relations += [(f"drug-{d['key']}", "may_treat", dis(k)) for k in d["treats"]]
        relations += [(f"drug-{d['key']}", "causes", dis(k)) for k in d["causes"]]
    progress = dict(lex["progressions"])
    for r in roots:
        for p, q in progress.items():
            relations.append((disease_id(r, p), "may_progress_to", disease_id(r, q)))

    world = World(concepts, relations, lex["relation_names"])
    tpl = lex["article"]

    def say(key: str, ids: tuple[str, ...], **fill: str) -> Sentence:
        en = {k: concepts[v].names["en"] if v in concepts else v for k, v in fill.items()}
        zh = {k: concepts[v].names["zh"] if v in concepts else v for k, v in fill.items()}
        en.update({k[0].upper() + k[1:]: _cap(v) for k, v in list(en.items())})
        return Sentence(tpl[key]["en"].format(**en), tpl[key]["zh"].format(**zh), ids)

    treated_by: dict[str, list[str]] = {}
    caused_by: dict[str, list[str]] = {}
    for h, rel, t in relations:
        if rel == "may_treat":
            treated_by.setdefault(t, []).append(h)
        elif rel == "causes":
            caused_by.setdefault(t, []).append(h)
    for cid, c in concepts.items():
        if c.parts is None:
            continue
        r, p = roots[c.parts[0]], paths[c.parts[1]]
        sents = [
            Sentence(
                tpl["disease"]["en"].format(
                    Name=_cap(c.names["en"]),
                    organ=r["organ_en"],
                    desc=p["desc_en"],
                    a_pathology=_a(p["en"]),
                    root=r["en"],
                ),
                tpl["disease"]["zh"].format(
                    name=c.names["zh"], organ=r["organ_zh"], desc=p["desc_zh"], pathology=p["noun_zh"], root=r["zh"]
                ),
                (cid,),
            ),
            Sentence(
                tpl["symptoms"]["en"].format(name=c.names["en"], symptom_a=r["symptom_en"], symptom_b=p["symptom_en"]),
                tpl["symptoms"]["zh"].format(name=c.names["zh"], symptom_a=r["symptom_zh"], symptom_b=p["symptom_zh"]),
                (cid,),
            ),
        ]
        if p["key"] in progress:
            other = disease_id(r["key"], progress[p["key"]])
            sents.append(say("progression", (cid, other), name=cid, other=other))
        sents += [say("treated_by", (drug, cid), drug=drug, name=cid) for drug in treated_by.get(cid, [])]
        sents += [say("caused_by", (drug, cid), drug=drug, name=cid) for drug in caused_by.get(cid, [])]
        world.articles[cid] = sents
    for d in lex["drugs"]:
        cid = f"drug-{d['key']}"
        sents = [say("drug", (cid,), drug=cid)]
        sents += [say("drug_treats", (cid, dis(k)), drug=cid, name=dis(k)) for k in d["treats"]]
        sents += [say("drug_causes", (cid, dis(k)), drug=cid, name=dis(k)) for k in d["causes"]]
        world.articles[cid] = sents
    return world


def load_concepts() -> dict[str, Concept]:
    return build_world().concepts


def load_relations() -> list[tuple[str, str, str]]:
    return build_world().relations


def draw_held_out(world: World, seed: int, fraction: float = HOLDOUT_FRACTION) -> list[str]:
    """A seeded draw of ``fraction`` of the diseases (sorted ids): the concepts held out of pretraining.

    Only diseases: each is a new composition of an organ and a pathology that other diseases
    anchor, so a model can find its translation without having seen it. A held-out drug's name has
    no parts another concept shares: no model could find its translation.
    """
    diseases = sorted(c.id for c in world.concepts.values() if c.parts is not None)
    rng = random.Random(f"heldout:{seed}")
    return sorted(rng.sample(diseases, max(1, round(fraction * len(diseases)))))


def _join(sents: Iterable[Sentence], lang: str) -> str:
    return ("" if lang == "zh" else " ").join(getattr(s, lang) for s in sents)


def ner_examples(concepts: dict[str, Concept], lang: str, n: int, seed: int, prefix: str) -> list[dict]:
    """Templated Drug/ADE sentences with BIO tags (English on spaces, Chinese one char per token)."""
    rng = random.Random(f"{seed}:{prefix}:{lang}")
    templates = load_lexicon()["ner"][lang]
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
            found = [(rest.find(k), k) for k in ("{drug}", "{adr}") if rest.find(k) >= 0]
            pos, key = min(found) if found else (len(rest), "")
            _add(tokens, tags, rest[:pos], "O", lang)
            if not key:
                break
            ent, etype = (drug, "Drug") if key == "{drug}" else (adr, "ADE")
            _add(tokens, tags, ent, etype, lang)
            rest = rest[pos + len(key) :]
        if lang == "en" and tokens:
            tokens[0] = _cap(tokens[0])
        records.append({"id": f"{prefix}-{lang}-{i}", "lang": lang, "tokens": tokens, "tags": tags})
    return records


def _add(tokens: list[str], tags: list[str], text: str, etype: str, lang: str) -> None:
    pieces = text.split() if lang == "en" else [ch for ch in text if not ch.isspace()]
    for j, p in enumerate(pieces):
        tokens.append(p)
        tags.append("O" if etype == "O" else ("B-" if j == 0 else "I-") + etype)


def write_demo_data(out: Path, seed: int = 13, held_out: Iterable[str] = ()) -> dict[str, Path]:
    """Write every demo input file under ``out``; returns their paths by role.

    KB files (concepts, relations, relation names), monolingual documents (one article per concept
    and language), the aligned article pairs (``article_pairs.jsonl``), the held-out concept ids
    (``heldout.txt``, one per line) and the NER sets. Sentences naming a ``held_out`` concept are
    left out of the article pairs (see :func:`write_parallel` for
    the line-aligned sentences the demo's passage level reads).
    """
    out.mkdir(parents=True, exist_ok=True)
    world = build_world()
    paths = {
        "concepts": out / "kb_concepts.tsv",
        "relations": out / "kb_relations.tsv",
        "relation_names": out / "kb_relation_names.tsv",
        "docs_en": out / "docs_en.jsonl",
        "docs_zh": out / "docs_zh.jsonl",
        "pairs": out / "article_pairs.jsonl",
        "heldout": out / "heldout.txt",
        **{f"ner_{split}_{lang}": out / f"ner_{split}_{lang}.jsonl" for split in NER_SIZES for lang in LANGS},
    }
    with atomic_write(paths["concepts"]) as fh:
        fh.write("id\ttype\tlang\tname\tpreferred\n")
        for c in world.concepts.values():
            for lang in LANGS:
                fh.write(f"{c.id}\t{c.type}\t{lang}\t{c.names[lang]}\t1\n")
    with atomic_write(paths["relations"]) as fh:
        fh.write("head\trel\ttail\n")
        fh.writelines(f"{h}\t{r}\t{t}\n" for h, r, t in world.relations)
    with atomic_write(paths["relation_names"]) as fh:
        fh.write("rel\tlang\ttext\n")
        fh.writelines(
            f"{rel}\t{lang}\t{text}\n" for rel, names in world.relation_names.items() for lang, text in names.items()
        )
    for lang in LANGS:
        write_jsonl(
            paths[f"docs_{lang}"],
            (
                {"id": f"{cid}-{lang}-{k}", "lang": lang, "text": _join(sents[k : k + DOC_SENTENCES], lang)}
                for cid, sents in world.articles.items()
                for k in range(0, len(sents), DOC_SENTENCES)
            ),
        )
    held = set(held_out)
    with atomic_write(paths["heldout"]) as fh:
        fh.writelines(c + "\n" for c in sorted(held))
    pairs = []
    for cid, sents in world.articles.items():
        kept = [s for s in sents if not held.intersection(s.concepts)]
        if kept:
            pairs.append({"id": cid, "sent1": _join(kept, "en"), "sent2": _join(kept, "zh"), "label": "link"})
    write_jsonl(paths["pairs"], pairs)
    for lang in LANGS:
        for split, n in NER_SIZES.items():
            write_jsonl(paths[f"ner_{split}_{lang}"], ner_examples(world.concepts, lang, n, seed, split))
    return paths


def write_parallel(out: Path, held_out: Iterable[str]) -> tuple[Path, Path, int, int]:
    """Line-aligned EN/ZH sentences of all articles (for ``corpus passage --parallel-a/-b``), without
    the sentences that name a held-out concept; returns the two paths, sentences kept and dropped."""
    world = build_world()
    held = set(held_out)
    kept = [s for sents in world.articles.values() for s in sents if not held.intersection(s.concepts)]
    dropped = sum(len(sents) for sents in world.articles.values()) - len(kept)
    paths = (out / "parallel.en", out / "parallel.zh")
    for lang, path in zip(LANGS, paths):
        with atomic_write(path) as fh:
            fh.writelines(getattr(s, lang) + "\n" for s in kept)
    return paths[0], paths[1], len(kept), dropped


def demo_texts(paths: dict[str, Path]) -> list[str]:
    """Every text of the demo data (documents, NER sentences, KB names): what the tokenizer covers."""
    texts: list[str] = []
    for key, path in paths.items():
        if path.suffix != ".jsonl" or key == "pairs":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "text" in rec:
                texts.append(rec["text"])
            elif "tokens" in rec:
                texts.append(("" if rec["lang"] == "zh" else " ").join(rec["tokens"]))
    names = paths["concepts"].read_text(encoding="utf-8").splitlines()[1:]
    texts.extend(line.split("\t")[3] for line in names)
    return texts
