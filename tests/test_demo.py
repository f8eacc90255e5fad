"""The demo: its synthetic data, its tokenizer, the progress helper, and the whole comparison end to end."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kbioxlm.demo.data import (
    build_world,
    draw_held_out,
    load_concepts,
    load_relations,
    write_demo_data,
    write_parallel,
)
from kbioxlm.progress import PlainProgress, progress, quiet_transformers


def _spans(rec: dict) -> list[str]:
    out: list[list[str]] = []
    for tok, tag in zip(rec["tokens"], rec["tags"]):
        if tag.startswith("B-"):
            out.append([tok])
        elif tag.startswith("I-"):
            out[-1].append(tok)
    sep = " " if rec["lang"] == "en" else ""
    return [sep.join(s) for s in out]


def test_demo_data_is_deterministic_and_designed_for_the_probe(tmp_path: Path) -> None:
    a = write_demo_data(tmp_path / "a", seed=3)
    b = write_demo_data(tmp_path / "b", seed=3)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key
    concepts = load_concepts()
    assert all(set(c.names) == {"en", "zh"} for c in concepts.values())
    assert all(h in concepts and t in concepts for h, _, t in load_relations())
    # diseases are compositions: every organ root and every pathology names 12 diseases in each language
    diseases = [c for c in concepts.values() if c.parts is not None]
    assert len(diseases) == 144 and len({c.names["en"] for c in diseases}) == 144
    roots = {c.parts[0] for c in diseases}
    assert all(sum(c.parts[0] == r for c in diseases) == 12 for r in roots)
    # monolingual documents name concepts only in their own language
    names = {lang: {c.names[lang] for c in concepts.values()} for lang in ("en", "zh")}
    for lang, other in (("en", "zh"), ("zh", "en")):
        texts = [json.loads(line)["text"] for line in a[f"docs_{lang}"].read_text(encoding="utf-8").splitlines()]
        assert texts and not any(n in t for t in texts for n in names[other])
    # NER: English train, Chinese test; every tagged span is a KB name of that language
    for split, lang in (("train", "en"), ("test", "zh")):
        for line in a[f"ner_{split}_{lang}"].read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            assert len(rec["tokens"]) == len(rec["tags"]) and rec["lang"] == lang
            assert _spans(rec) and all(s.lower() in {n.lower() for n in names[lang]} for s in _spans(rec))


def test_held_out_concepts_stay_out_of_the_aligned_sentences(tmp_path: Path) -> None:
    world = build_world()
    drawn = draw_held_out(world, seed=3)
    assert drawn == draw_held_out(world, seed=3) != draw_held_out(world, seed=4)
    assert len(drawn) == round(0.2 * 144) and all(world.concepts[c].parts is not None for c in drawn)
    held = ["dis-stomach-haemorrhage", "dis-kidney-cyst"]
    paths = write_demo_data(tmp_path, seed=3, held_out=held)
    assert paths["heldout"].read_text(encoding="utf-8").split() == sorted(held)
    en, zh, kept, dropped = write_parallel(tmp_path, held)
    for cid in held:
        for path, lang in ((en, "en"), (zh, "zh"), (paths["pairs"], "en"), (paths["pairs"], "zh")):
            assert world.concepts[cid].names[lang] not in path.read_text(encoding="utf-8").lower()
    assert dropped > 0 and kept == len(en.read_text(encoding="utf-8").splitlines())
    # ... but their parts are anchored by other diseases
    assert "gastric" in en.read_text(encoding="utf-8") and "出血" in zh.read_text(encoding="utf-8")


def test_demo_tokenizer_splits_words_and_characters(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from kbioxlm.demo.data import demo_texts
    from kbioxlm.demo.experiment import train_demo_tokenizer

    data = write_demo_data(tmp_path / "data", seed=3)
    tok = AutoTokenizer.from_pretrained(train_demo_tokenizer(demo_texts(data), tmp_path / "tok"))
    assert tok.tokenize("Gastric haemorrhage") == ["▁gastric", "▁haemorrhage"]
    assert tok.tokenize("胃出血") == ["▁胃", "▁出", "▁血"]
    assert tok.tokenize("服用胃") == tok.tokenize("服用") + ["▁胃"]  # a character is one piece wherever it stands
    assert tok.mask_token_id is not None and tok.pad_token_id is not None


# ---------------------------------------------------------------------------------- progress output
def test_progress_is_plain_lines_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KBIOXLM_PROGRESS", raising=False)
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress(total=4, desc="pretrain", unit="step", interval=0.0)
    assert isinstance(bar, PlainProgress)
    for _ in range(4):
        bar.set_postfix(loss="1.234")
        bar.update(1)
    bar.close()
    out = err.getvalue()
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert lines[0].startswith("pretrain: 1/4 (25%)") and "loss=1.234" in lines[0]
    assert lines[-1].startswith("pretrain: 4/4 (100%)")
    # wrapping an iterable; nothing at all when disabled
    assert list(progress(range(3), desc="x", interval=0.0)) == [0, 1, 2]
    before = err.getvalue()
    list(progress(range(3), desc="y", interval=0.0, enabled=False))
    assert err.getvalue() == before


def test_progress_lines_are_spaced_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    bar = progress(total=1000, desc="d", stream=stream, interval=3600.0)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert stream.getvalue() == ""  # finished before the first interval: no line at all


def test_progress_is_tqdm_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("KBIOXLM_PROGRESS", raising=False)
    bar = progress(total=2, desc="d", stream=Tty())
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setenv("KBIOXLM_PROGRESS", "plain")
    assert isinstance(progress(total=2, stream=Tty()), PlainProgress)


def test_quiet_transformers_hides_load_reports(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModel, XLMRobertaConfig, XLMRobertaForMaskedLM

    cfg = XLMRobertaConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )
    with quiet_transformers():
        XLMRobertaForMaskedLM(cfg).save_pretrained(tmp_path / "m")
        AutoModel.from_pretrained(tmp_path / "m")  # lm_head unexpected, pooler missing
    captured = capfd.readouterr()
    assert "UNEXPECTED" not in captured.err + captured.out and "\r" not in captured.err


# ---------------------------------------------------------------------------------- end to end
def test_demo_end_to_end_small(tmp_path: Path) -> None:
    """The whole comparison at reduced size, as a user runs it with its output redirected to a file;
    what ran is the pipeline config the demo wrote, which ``kbioxlm pipeline`` runs by hand."""
    work = tmp_path / "demo"
    log = tmp_path / "stdout-and-stderr.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("KBIOXLM_PROGRESS", "KBIOXLM_PROGRESS_INTERVAL")}
    env["KBIOXLM_PROGRESS_INTERVAL"] = "0"  # a progress line for every update: the file must still be plain
    with open(log, "wb") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "kbioxlm", "demo", "--workdir", str(work), "--seeds", "2",
             "--pretrain-steps", "6", "--epochs", "1"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=300,
        )  # fmt: skip
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text[-3000:]
    res = json.loads((work / "results.json").read_text(encoding="utf-8"))
    assert set(res) == {"arms", "seconds"} and res["seconds"] > 0
    assert set(res["arms"]) == {"base", "mlm", "kbioxlm"}
    for arm in res["arms"].values():
        assert set(arm) == {"term_retrieval_en_zh", "term_retrieval_zh_en", "ner_zero_shot_f1"}
        for cell in arm.values():
            assert set(cell) == {"mean", "sd", "values"} and len(cell["values"]) == 2
            assert all(0.0 <= v <= 100.0 for v in cell["values"]) and cell["sd"] >= 0
    assert (work / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a readable log: the table, one line per step, no carriage returns, no transformers load reports
    assert "| kbioxlm (MLM + entity + fact + passage) |" in text and "seed 14: done" in text
    # every step of every seed's run is in the log, as the command it ran
    details = (work / "demo.log").read_text(encoding="utf-8")
    assert details.count("pretrain.kbioxlm: continued pretraining") == 2
    assert f"$ kbioxlm probe --model {work}/seed-14/models/kbioxlm" in details
    assert "\r" not in text
    for noise in ("UNEXPECTED", "MISSING", "LOAD REPORT", "Loading weights", "Writing model shards", "WARNING"):
        assert noise not in text, noise
    # the table's numbers are the pipeline runs' own outputs
    runs = json.loads((work / "runs.json").read_text(encoding="utf-8"))["seeds"]
    for i, seed in enumerate((13, 14)):
        probe = json.loads((work / f"seed-{seed}" / "probe" / "kbioxlm" / "probe.json").read_text(encoding="utf-8"))
        assert res["arms"]["kbioxlm"]["term_retrieval_en_zh"]["values"][i] == round(
            probe["term_retrieval"]["en_zh"]["acc1"], 2
        )
        assert runs[i]["seed"] == seed and runs[i]["arms"]["kbioxlm"]["n_terms"] == probe["term_retrieval"]["n"]
    # no pretraining record links a held-out disease to its translation: never an entity (so never
    # switched), never in a fact or an aligned pair; its name occurs only in its own language's text
    held = set((work / "data" / "heldout.txt").read_text(encoding="utf-8").split())
    world = build_world()
    assert held and all(world.concepts[c].parts is not None for c in held)
    corpora = sorted(work.glob("seed-*/corpus/*.jsonl"))
    assert {p.name for p in corpora} >= {"entity.en+zh.jsonl", "fact.en-zh.jsonl", "fact.zh-en.jsonl"}
    for path in corpora:
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            assert not held.intersection(e["concept"] for e in rec.get("entities", [])), path.name
            texts = {rec["lang_a"]: rec["text_a"], rec["lang_b"]: rec["text_b"]} if "text_a" in rec else {}
            if rec.get("task") == "fact":
                texts = {"en": rec["text"], "zh": rec["text"]}  # both languages in one text
            elif "text" in rec:
                texts = {"zh" if rec["lang"] == "en" else "en": rec["text"]}  # the other language must not occur
            for lang, t in texts.items():
                assert not any(world.concepts[c].names[lang] in t.lower() for c in held), (path.name, rec["id"])
    # the demo's pipeline, run by hand for one seed: every step is already done
    proc = subprocess.run(
        [sys.executable, "-m", "kbioxlm", "pipeline", "--config", str(work / "pipeline.yaml"), "--seed", "14",
         "--out", str(work / "seed-14")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped (done" in proc.stdout and "$ kbioxlm" not in proc.stdout


def test_written_pipeline_config_takes_given_paths_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--model ../m`` is typed from the current directory; the written config's own paths are from
    the work folder, so the given model and tokenizer must reach it as absolute paths."""
    import yaml

    from kbioxlm.demo.experiment import DemoSettings, write_pipeline_config
    from kbioxlm.pipeline.config import load_pipeline_config

    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "runs" / "demo"
    work.mkdir(parents=True)
    s = DemoSettings(workdir="runs/demo", model="m", batch_size=4)
    path = write_pipeline_config(s, work, steps=7, epochs=2, lr=5e-5, real=True)
    cfg = load_pipeline_config(path, seed=21)
    assert cfg.base_model["path"] == cfg.base_model["tokenizer"] == str(tmp_path / "m")
    assert cfg.out == work / "seed-21" and cfg.holdout == {"concepts": str(work / "data" / "heldout.txt")}
    assert all(st["overrides"]["max_steps"] == 7 and st["overrides"]["per_device_train_batch_size"] == 4
               for st in cfg.pretrain)  # fmt: skip
    bench = yaml.safe_load((work / "ner-benchmark.yaml").read_text(encoding="utf-8"))
    assert bench["finetune"]["epochs"] == 2 and cfg.benchmark is not None
    assert cfg.benchmark["overrides"]["seeds"] == [21]


def test_demo_bad_work_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kbioxlm.cli import main

    (tmp_path / "a-file").write_text("", encoding="utf-8")
    assert main(["demo", "--workdir", str(tmp_path / "a-file" / "demo"), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the work folder" in err
