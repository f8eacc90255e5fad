"""``kbioxlm benchmark``: the matrix end to end on a tiny random model, resume, reports, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kbioxlm.cli import main
from kbioxlm.errors import KbioxlmError
from kbioxlm.tasks import benchmark as B
from kbioxlm.tasks.report import render_markdown

EN_DRUGS, ZH_DRUGS = ["aspirin", "ibuprofen", "warfarin", "heparin"], ["阿司匹林", "布洛芬", "华法林", "肝素"]
EN_ADES, ZH_ADES = ["headache", "nausea", "rash", "bleeding"], ["头痛", "恶心", "皮疹", "出血"]


def _conll(path: Path, lang: str, n: int, offset: int) -> None:
    """Release-style CoNLL: ``-DOCSTART-\\t<id>``, one word (EN) or one character (ZH) per line."""
    out = []
    for i in range(n):
        d, a = (i + offset) % 4, (i * 3 + offset) % 4
        out.append(f"-DOCSTART-\t{offset + i}\n\n")
        if lang == "en":
            words = [(EN_DRUGS[d], "B-Drug"), ("caused", "O"), ("severe", "O"), (EN_ADES[a], "B-ADE"), (".", "O")]
        else:
            words = [(c, ("B-" if k == 0 else "I-") + "Drug") for k, c in enumerate(ZH_DRUGS[d])]
            words += [(c, "O") for c in "引起严重"]
            words += [(c, ("B-" if k == 0 else "I-") + "ADE") for k, c in enumerate(ZH_ADES[a])]
            words.append(("。", "O"))
        out.append("".join(f"{w}\t{t}\n" for w, t in words) + "\n")
    path.write_text("".join(out), encoding="utf-8")


def _gad(path: Path, lang: str, n: int, offset: int) -> None:
    link = {"en": ("is associated with", "is not related to"), "zh": ("与", "无关于")}[lang]
    rows = [
        {"id": str(offset + i), "sentence": f"@GENE$ {link[i % 2]} @DISEASE$ {i}", "label": str(1 - i % 2)}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _hoc(path: Path, lang: str, n: int, offset: int) -> None:
    words = {"en": ["tumour growth", "apoptosis resistance", "angiogenesis"], "zh": ["肿瘤生长", "抗凋亡", "血管生成"]}[
        lang
    ]
    rows = []
    for i in range(n):
        lab = [int(i % 3 == k) for k in range(3)]
        rows.append(
            {"sentence": f"{words[i % 3]} . {words[(i + 1) % 3]} study .", "label": lab, "id": str(20000 + offset + i)}
        )
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_synthetic_sets(root: Path) -> list[dict]:
    """Tiny ADE-, GAD- and HoC-like sets in EN and ZH, in the release formats."""
    tasks = []
    for name, typ, writer, ext in (
        ("syn-ade", "ner", _conll, "txt"),
        ("syn-gad", "re", _gad, "json"),
        ("syn-hoc", "dc", _hoc, "json"),
    ):
        files: dict = {}
        for lang in ("en", "zh"):
            files[lang] = {}
            for split, n, off in (("train", 12, 0), ("dev", 4, 100), ("test", 4, 200)):
                p = root / name / lang / f"{split}.{ext}"
                p.parent.mkdir(parents=True, exist_ok=True)
                writer(p, lang, n, off)
                files[lang][split] = str(p)
        tasks.append({"name": name, "type": typ, "files": files})
    return tasks


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, xlmr_tokenizer_path) -> Path:
    """A random 2-layer XLM-R with the real XLM-R tokenizer (no download, seconds to train)."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    out = tmp_path_factory.mktemp("tiny-xlmr")
    tok = AutoTokenizer.from_pretrained(xlmr_tokenizer_path)
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
    )
    XLMRobertaModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _config(tmp_path: Path, tasks: list[dict], model: str, **extra) -> Path:
    cfg = {
        "models": [{"name": "tiny", "path": model}],
        "tasks": tasks,
        "directions": ["en-zh"],
        "settings": ["zero-shot", "few-shot-2"],
        "seeds": [1],
        "finetune": {
            "epochs": 1,
            "max_length": 32,
            "batch_size": 8,
            "lr": "5e-4",
            "num_threads": 2,
            "early_stopping_patience": None,
        },
        "max_train_examples": 6,
        **extra,
    }
    p = tmp_path / "bench.yaml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def _table(md: str, title: str) -> list[list[str]]:
    """Rows (header first) of the first Markdown table after the section ``title``."""
    sec = md.split(f"## {title}", 1)[1]
    block: list[str] = []
    for ln in sec.splitlines()[1:]:
        if ln.startswith("|"):
            block.append(ln)
        elif block:
            break
    assert block, title
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in block if not ln.startswith("|---")]


def test_benchmark_end_to_end_and_resume(tmp_path, tiny_model, capsys):
    tasks = write_synthetic_sets(tmp_path / "data")
    cfg = _config(tmp_path, tasks, str(tiny_model))
    out = tmp_path / "bench"
    assert main(["benchmark", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "6 cells: 6 run, 0 skipped" in capsys.readouterr().out

    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 6 and len({r["cell"] for r in recs}) == 6
    assert {(r["dataset"], r["setting"], r["shots"]) for r in recs} == {
        (d, s, k) for d in ("syn-ade", "syn-gad", "syn-hoc") for s, k in (("zero-shot", 0), ("few-shot", 2))
    }
    for r in recs:
        assert 0.0 <= r["f1"] <= 100.0 and r["n_test"] == 4 and r["direction"] == "en-zh"
        folder = out / r["folder"]
        assert (folder / "results.json").is_file() and (folder / "cell.json").is_file()
        assert json.loads((folder / "results.json").read_text(encoding="utf-8"))["config"]["out"] == str(folder)
        sampled = json.loads((folder / "sampled_ids.json").read_text(encoding="utf-8"))
        if r["setting"] == "few-shot":
            fs = sampled["fewshot"]
            assert (
                fs["lang"] == "zh"
                and len(fs["ids"]) == 2
                and fs["from"].endswith(f"{r['dataset']}/zh/train." + ("txt" if r["task"] == "ner" else "json"))
            )
            assert r["n_train"] == 6 + 2  # max_train_examples source examples + K target examples
        else:
            assert "fewshot" not in sampled and r["n_train"] == 6
        preds = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(preds) == 4
    assert not list(out.rglob("*.partial"))

    md = (out / "results.md").read_text(encoding="utf-8")
    zs = _table(md, "Cross-lingual zero-shot (layout of Table 4)")
    assert zs[0] == ["Direction", "Dataset", "tiny"]
    assert [row[1] for row in zs[1:]] == ["syn-ade", "syn-gad", "syn-hoc", "AVG"]
    by = {r["dataset"]: r["f1"] for r in recs if r["setting"] == "zero-shot"}
    assert zs[1][2] == f"{by['syn-ade']:.2f}"
    assert zs[4][2] == f"{sum(by.values()) / 3:.2f}"
    fs_table = _table(md, "Cross-lingual few-shot (layout of Table 5)")
    assert fs_table[0] == ["Model", "2-shot syn-ade", "2-shot syn-gad", "2-shot syn-hoc", "2-shot AVG"]
    assert len(fs_table) == 2 and fs_table[1][0] == "tiny"
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # second invocation: every cell is skipped, nothing is re-trained or rewritten
    before = (out / "results.jsonl").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("results.json")}
    assert main(["benchmark", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "6 cells: 0 run, 6 skipped" in capsys.readouterr().out
    assert (out / "results.jsonl").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results.json")} == stamps


# ----------------------------------------------------------- orchestration with a stand-in trainer
# (the real trainer runs in the end-to-end test above; these check bookkeeping only)


def _stub(calls: list[dict], fail_on: str | None = None):
    def run(kw: dict) -> dict:
        calls.append(kw)
        if fail_on and fail_on in kw["out"]:
            raise RuntimeError("boom")
        Path(kw["out"]).mkdir(parents=True, exist_ok=True)
        f1 = 50.0 + len(kw["train"]) / 10
        res = {"task": kw["task"], "metric": "f1", "f1": f1, "precision": f1, "recall": f1, "n_test": len(kw["test"])}
        (Path(kw["out"]) / "results.json").write_text(json.dumps(res), encoding="utf-8")
        return res

    return run


def test_interrupted_run_resumes_only_unfinished_cells(tmp_path):
    tasks = write_synthetic_sets(tmp_path / "data")
    cfg = B.load_benchmark_config(_config(tmp_path, tasks, "unused-model", seeds=[1, 2]))
    out = tmp_path / "bench"
    calls: list[dict] = []
    with pytest.raises(RuntimeError):
        B.run_benchmark(cfg, out, run_fn=_stub(calls, fail_on="syn-gad"), progress=False)
    done = B.read_results(out / "results.jsonl")
    assert [r["dataset"] for r in done] == ["syn-ade", "syn-ade"]  # the cells before the crash
    assert not list(out.rglob("*.partial"))  # the crashed cell left no half-written folder behind
    assert not (out / "cells" / "tiny" / "syn-gad" / "en-zh" / "zero-shot" / "seed1").exists()
    calls.clear()
    counts = B.run_benchmark(cfg, out, run_fn=_stub(calls), progress=False)
    assert counts == {"cells": 12, "ran": 10, "skipped": 2, "recovered": 0}
    assert len(calls) == 10 and not list(out.rglob("*.partial"))
    assert len(B.read_results(out / "results.jsonl")) == 12
    # a folder renamed into place whose results line was lost is recovered, not re-trained
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20], encoding="utf-8")  # torn tail
    calls.clear()
    counts = B.run_benchmark(cfg, out, run_fn=_stub(calls), progress=False)
    assert counts["recovered"] == 1 and counts["ran"] == 0 and not calls
    assert len(B.read_results(out / "results.jsonl")) == 12


def test_training_seed_does_not_change_the_fewshot_sample(tmp_path):
    tasks = write_synthetic_sets(tmp_path / "data")
    samples, seeds, train_ids = [], [], []
    for ts in (11, 99):
        cfg = B.load_benchmark_config(_config(tmp_path, tasks, "m", settings=["few-shot-3"], train_seed=ts))
        calls: list[dict] = []
        B.run_benchmark(cfg, tmp_path / f"out{ts}", run_fn=_stub(calls), progress=False)
        seeds.append({kw["seed"] for kw in calls})
        samples.append([json.loads(p.read_text()) for p in sorted((tmp_path / f"out{ts}").rglob("sampled_ids.json"))])
        train_ids.append([[r["id"] for r in kw["train"]] for kw in calls])
    assert seeds == [{11}, {99}]
    assert samples[0] == samples[1] and all(len(s["fewshot"]["ids"]) == 3 for s in samples[0])
    assert train_ids[0] == train_ids[1]  # the same records went to the trainer under both training seeds
    # a different sampling seed draws another sample
    cfg = B.load_benchmark_config(_config(tmp_path, tasks, "m", settings=["few-shot-3"], seeds=[2]))
    B.run_benchmark(cfg, tmp_path / "out-s2", run_fn=_stub([]), progress=False)
    other = [json.loads(p.read_text()) for p in sorted((tmp_path / "out-s2").rglob("sampled_ids.json"))]
    assert [s["fewshot"]["ids"] for s in other] != [s["fewshot"]["ids"] for s in samples[0]]


def test_changed_settings_are_not_mixed_into_finished_results(tmp_path):
    tasks = write_synthetic_sets(tmp_path / "data")
    out = tmp_path / "bench"
    B.run_benchmark(
        B.load_benchmark_config(_config(tmp_path, tasks, "m", settings=["zero-shot"])),
        out,
        run_fn=_stub([]),
        progress=False,
    )
    changed = B.load_benchmark_config(_config(tmp_path, tasks, "m", settings=["zero-shot"], max_train_examples=5))
    with pytest.raises(KbioxlmError, match="other settings"):
        B.run_benchmark(changed, out, run_fn=_stub([]), progress=False)
    # thread count / progress bars do not invalidate cells
    same = _config(tmp_path, tasks, "m", settings=["zero-shot"])
    raw = yaml.safe_load(same.read_text(encoding="utf-8"))
    raw["finetune"]["num_threads"] = 1
    assert B.run_benchmark(B.config_from_dict(raw), out, run_fn=_stub([]), progress=False)["skipped"] == 3


def test_monolingual_cells_cover_both_languages_of_the_directions(tmp_path):
    tasks = write_synthetic_sets(tmp_path / "data")
    cfg = B.load_benchmark_config(_config(tmp_path, tasks, "m", settings=["monolingual"]))
    cells = B.expand(cfg)
    assert sorted({c.direction for c in cells}) == ["en-en", "zh-zh"] and len(cells) == 6
    calls: list[dict] = []
    B.run_benchmark(cfg, tmp_path / "o", run_fn=_stub(calls), progress=False)
    for kw in calls:
        langs = {r["lang"] for part in ("train", "dev", "test") for r in kw[part]}
        assert len(langs) == 1
    md = (tmp_path / "o" / "results.md").read_text(encoding="utf-8")
    t6 = _table(md, "Monolingual (layout of Table 6)")
    assert t6[0] == ["Setting", "Model", "syn-ade", "syn-gad", "syn-hoc", "AVG"]
    assert [r[0] for r in t6[1:]] == ["en→en", "zh→zh"]


# ---------------------------------------------------------------------------------------- reports


def _rec(model: str, ds: str, setting: str, direction: str, seed: int, f1: float, shots: int = 0) -> dict:
    return {
        "cell": f"{model}/{ds}/{direction}/{setting}{shots}/seed{seed}",
        "model": model,
        "dataset": ds,
        "dataset_label": ds.upper(),
        "setting": setting,
        "shots": shots,
        "direction": direction,
        "seed": seed,
        "f1": f1,
        "metric": "f1",
    }


def test_report_tables_mean_std_and_layout():
    recs = []
    for mi, model in enumerate(("XLM-R", "KBioXLM")):
        for di, ds in enumerate(("ade", "gad", "hoc")):
            for direction in ("en-zh", "zh-en"):
                for seed, delta in ((1, -2.0), (2, 0.0), (3, 2.0)):
                    recs.append(_rec(model, ds, "zero-shot", direction, seed, 60 + 10 * mi + di + delta))
            for k in (10, 100):
                recs.append(_rec(model, ds, "few-shot", "en-zh", 1, 50 + k / 10 + mi, shots=k))
    recs = [
        r
        for r in recs
        if not (r["model"] == "XLM-R" and r["dataset"] == "hoc" and r["setting"] == "few-shot" and r["shots"] == 100)
    ]
    md = render_markdown(recs)
    t4 = _table(md, "Cross-lingual zero-shot (layout of Table 4)")
    assert t4[0] == ["Direction", "Dataset", "XLM-R", "KBioXLM"]
    assert len(t4) == 1 + 2 * 4 and [r[0] for r in t4[1:]] == ["en→zh"] * 4 + ["zh→en"] * 4
    assert t4[1][2:] == ["60.00 ± 2.00", "**70.00 ± 2.00**"]
    assert t4[4][1] == "AVG" and t4[4][2] == "61.00 ± 2.00"
    t5 = _table(md, "Cross-lingual few-shot (layout of Table 5)")
    assert t5[0][1:] == [
        "10-shot ADE",
        "10-shot GAD",
        "10-shot HOC",
        "10-shot AVG",
        "100-shot ADE",
        "100-shot GAD",
        "100-shot HOC",
        "100-shot AVG",
    ]
    xlmr = t5[1]
    assert xlmr[0] == "XLM-R" and xlmr[1] == "51.00" and xlmr[7] == "–" and xlmr[8] == "–"  # missing cell → no AVG
    t7 = _table(md, "Cross-lingual zero-shot per model (layout of Table 7, ablations)")
    assert t7[0] == ["Model", "ADE", "GAD", "HOC", "AVG"] and [r[0] for r in t7[1:]] == ["XLM-R", "KBioXLM"]


def test_config_errors_are_one_line_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{name: a, path: b}]\ntasks: [bc5cdr]\n", encoding="utf-8")
    assert main(["benchmark", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "BC5CDR is not in the release" in err
    bad.write_text("models: [{name: a, path: b}]\nsettings: [few-shot-x]\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match="few-shot-x"):
        B.load_benchmark_config(bad)
    bad.write_text("models: [{name: a, path: b}]\nfinetune: {seed: 3}\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match="set per cell"):
        B.load_benchmark_config(bad)
    bad.write_text("models: [{name: a, path: b}\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"bad.yaml:\d+: invalid YAML"):
        B.load_benchmark_config(bad)
    assert not (tmp_path / "o").exists()


def test_shipped_configs_parse():
    root = Path(__file__).resolve().parents[1] / "configs"
    paper = B.load_benchmark_config(root / "benchmark-paper.yaml")
    assert [d.name for d in paper.datasets] == ["ade", "gad", "hoc"] and len(paper.seeds) >= 3
    assert {s for s, _ in paper.settings} == {"monolingual", "zero-shot", "few-shot"}
    small = B.load_benchmark_config(root / "benchmark-small-cpu.yaml")
    assert {s for s, _ in small.settings} == {"zero-shot"} and len(small.directions) == 2
    adn = B.load_benchmark_config(root / "adapt-norm-small-cpu.yaml")
    cells = B.expand(adn)
    assert len(cells) == 8 and all(B.finetune_kwargs(adn, c)["adapt_norm"] is True for c in cells)
    assert {B.finetune_kwargs(adn, c)["head"] for c in cells} == {"normalized"}
