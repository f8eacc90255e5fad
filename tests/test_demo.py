"""The demo: shipped resources expand deterministically, and the whole pipeline runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

from kbioxlm.cli import main
from kbioxlm.demo.data import load_concepts, load_relations, write_demo_data


def test_demo_data_is_deterministic_and_consistent(tmp_path: Path) -> None:
    a = write_demo_data(tmp_path / "a", seed=3)
    b = write_demo_data(tmp_path / "b", seed=3)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key
    concepts = load_concepts()
    assert all(set(c.names) == {"en", "zh"} for c in concepts.values())
    assert all(h in concepts and t in concepts for h, _, t in load_relations())
    names = {lang: {c.names[lang] for c in concepts.values()} for lang in ("en", "zh")}
    for lang in ("en", "zh"):
        for line in a[f"ner_train_{lang}"].read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            assert len(rec["tokens"]) == len(rec["tags"])
            # every tagged span is a KB name of that language (case-folded for sentence-initial English)
            spans, cur = [], []
            for tok, tag in zip(rec["tokens"], rec["tags"]):
                if tag.startswith("B-"):
                    cur = [tok]
                    spans.append(cur)
                elif tag.startswith("I-"):
                    cur.append(tok)
            sep = " " if lang == "en" else ""
            assert spans and all(sep.join(s).lower() in {n.lower() for n in names[lang]} for s in spans)


def test_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    work = tmp_path / "demo"
    rc = main(["demo", "--workdir", str(work), "--pretrain-steps", "4", "--epochs", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| base |" in out and "| kbioxlm |" in out
    for name in ("base", "kbioxlm"):
        res = json.loads((work / "finetune" / name / "results.json").read_text(encoding="utf-8"))
        assert res["task"] == "ner" and res["n_test"] == 80 and 0.0 <= res["f1"] <= 100.0
    # the corpora hold code-switched entities in both directions and passage pairs of all three kinds
    switched = {
        lang: sum(e["switched"] for line in (work / "corpus" / f"entity_{lang}.jsonl").open(encoding="utf-8")
                  for e in json.loads(line)["entities"])
        for lang in ("en", "zh")
    }
    assert switched["en"] > 0 and switched["zh"] > 0
    labels = {json.loads(line)["label"] for line in (work / "corpus" / "passage.jsonl").open(encoding="utf-8")}
    assert labels == {"positive", "random", "context"}
    assert (work / "kbioxlm-model" / "config.json").exists()
    md = (work / "results.md").read_text(encoding="utf-8")
    assert md.startswith("| held-out accuracy (%) | step 0 | step 4 |") and "| model |" in md
