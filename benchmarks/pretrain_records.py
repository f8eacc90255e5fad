"""Pretraining records for the benchmarks, built by the toolkit's own corpus stage.

The pretraining benchmarks (``input_pipeline.py``, ``gpu_pretrain.py``) must time the collator
and model on what a real run feeds them: Documents of real length, code-switched entity records,
fact records and passage pairs as ``kbioxlm corpus`` writes them. Two sources:

* ``real`` (needs ../shared or ``KBIOXLM_SHARED``): a KB from the real HPO ontology with its
  official Chinese labels (``kb import obo``), Documents from the PubMedQA abstracts (EN) and the
  CMeEE sentences (ZH), ``corpus build --levels entity,fact`` over both, and ``corpus passage``
  over the KBioXLM release's Wikipedia article pairs (``pair_data.json``).
* ``demo``: the demo's synthetic bilingual world (no files needed), through the same stages.
  Its texts are short (a few sentences), so 512-token limits are never reached.

Everything goes through ``kbioxlm.cli.main`` (the public commands), and is cached in a work folder
keyed by source (the KB import and the builds take about a minute on one core).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = Path(os.environ.get("KBIOXLM_SHARED", ROOT.parent / "shared"))
VERSION = 1  # bump when what is built changes (invalidates caches)


def shared_available() -> bool:
    return (SHARED / "data/kb/hpo/hp.obo").is_file() and (SHARED / "data/corpora/en/ori_pqal.json").is_file()


def _cli(args: list[str]) -> None:
    from kbioxlm.cli import main

    rc = main(args)
    if rc not in (0, None):
        raise SystemExit(f"kbioxlm {' '.join(args[:2])} failed with status {rc}")


def _write_docs(path: Path, texts: list[str], lang: str) -> None:
    from kbioxlm.io import write_jsonl

    write_jsonl(path, ({"id": f"{lang}{i}", "lang": lang, "text": t} for i, t in enumerate(texts) if t.strip()))


def _real_inputs(work: Path) -> dict[str, Path]:
    data = SHARED / "data"
    kb = work / "kb.sqlite"
    if not kb.is_file():
        tmp = work / ".kb.sqlite.tmp"
        tmp.unlink(missing_ok=True)
        _cli(
            [
                "kb",
                "import",
                "obo",
                "--obo",
                str(data / "kb/hpo/hp.obo"),
                "--translations",
                str(data / "kb/hpo/hp-zh.babelon.tsv"),
                "--kb",
                str(tmp),
            ]
        )
        os.replace(tmp, kb)
    en = [
        " ".join(r["CONTEXTS"])
        for r in json.loads((data / "corpora/en/ori_pqal.json").read_text(encoding="utf-8")).values()
    ]
    zh = [
        r["text"]
        for name in ("cmeee_dev.json", "cmeee_test.json")
        for r in json.loads((data / "corpora/zh" / name).read_text(encoding="utf-8"))
    ]
    _write_docs(work / "docs_en.jsonl", en, "en")
    _write_docs(work / "docs_zh.jsonl", zh, "zh")
    return {
        "kb": kb,
        "docs_en": work / "docs_en.jsonl",
        "docs_zh": work / "docs_zh.jsonl",
        "pairs": data / "kbioxlm-release/pretrain/pair_data.json",
    }


def _demo_inputs(work: Path) -> dict[str, Path]:
    from kbioxlm.demo.data import write_demo_data
    from kbioxlm.kb.tsv_import import import_tsv

    paths = write_demo_data(work / "data", seed=13)
    kb = work / "kb.sqlite"
    if not kb.is_file():
        tmp = work / ".kb.sqlite.tmp"
        tmp.unlink(missing_ok=True)
        import_tsv(
            tmp, concepts=paths["concepts"], relations=paths["relations"], relation_names=paths["relation_names"]
        )
        os.replace(tmp, kb)
    return {"kb": kb, "docs_en": paths["docs_en"], "docs_zh": paths["docs_zh"], "pairs": paths["pairs"]}


def build_records(work: Path, source: str = "auto") -> dict[str, list[Path]]:
    """Record files by task (``mlm``, ``entity``, ``fact``, ``passage``), built once per source.

    ``auto`` picks ``real`` when the shared data is there, else ``demo``.
    """
    if source == "auto":
        source = "real" if shared_available() else "demo"
    if source == "real" and not shared_available():
        raise SystemExit(f"records source 'real' needs the shared data at {SHARED} (set KBIOXLM_SHARED)")
    work = Path(work) / f"records-{source}-v{VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    out = {
        "mlm": [work / "docs_en.jsonl", work / "docs_zh.jsonl"] if source == "real" else [],
        "entity": [work / "entity_en.jsonl", work / "entity_zh.jsonl"],
        "fact": [work / "fact_en.jsonl", work / "fact_zh.jsonl"],
        "passage": [work / "passage.jsonl"],
    }
    done = work / "done.json"
    if done.is_file():
        return {k: [Path(p) for p in v] for k, v in json.loads(done.read_text(encoding="utf-8")).items()}
    inputs = _real_inputs(work) if source == "real" else _demo_inputs(work)
    if source == "demo":
        out["mlm"] = [inputs["docs_en"], inputs["docs_zh"]]
    for src, tgt in (("en", "zh"), ("zh", "en")):
        _cli(
            [
                "corpus",
                "build",
                "--kb",
                str(inputs["kb"]),
                "--input",
                str(inputs[f"docs_{src}"]),
                "--lang",
                src,
                "--target-lang",
                tgt,
                "--levels",
                "entity,fact",
                "--entity-out",
                str(work / f"entity_{src}.jsonl"),
                "--fact-out",
                str(work / f"fact_{src}.jsonl"),
                "--seed",
                "0",
                "--no-progress",
            ]
        )
    _cli(
        [
            "corpus",
            "passage",
            "--pairs",
            str(inputs["pairs"]),
            "--lang-a",
            "en",
            "--lang-b",
            "zh",
            "--out",
            str(work / "passage.jsonl"),
            "--seed",
            "0",
            "--no-progress",
        ]
    )
    done.write_text(json.dumps({k: [str(p) for p in v] for k, v in out.items()}), encoding="utf-8")
    return out


def load_pools(files: dict[str, list[Path]]) -> dict[str, list[dict]]:
    """Records per task, read and validated as the trainer reads them."""
    from kbioxlm.pretrain.data import TrainFile, load_pretrain_records

    return load_pretrain_records([TrainFile(str(p)) for ps in files.values() for p in ps])
