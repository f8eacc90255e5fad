"""End-to-end fine-tuning on a tiny random XLM-R (real tokenizer) for every task type."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kbioxlm.errors import KbioxlmError
from kbioxlm.tasks.finetune import FinetuneConfig, run_finetune

NER_EN = [
    (["Aspirin", "caused", "a", "rash", "."], ["B-Drug", "O", "O", "B-ADE", "O"]),
    (["Fulminant", "hepatic", "failure", "after", "didanosine"], ["B-ADE", "I-ADE", "I-ADE", "O", "B-Drug"]),
    (["No", "events", "were", "seen", "."], ["O", "O", "O", "O", "O"]),
    (["Lithium", "toxicity", "developed"], ["B-Drug", "I-ADE", "O"]),  # the release's flattened overlap
]
NER_ZH = "-DOCSTART-\t1\n\n服\tO\n用\tO\n阿\tB-Drug\n司\tI-Drug\n匹\tI-Drug\n林\tI-Drug\n后\tO\n出\tB-ADE\n血\tI-ADE\n\n" \
         "-DOCSTART-\t2\n\n皮\tB-ADE\n疹\tI-ADE\n。\tO\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, xlmr_tokenizer_path: Path) -> str:
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    tok = AutoTokenizer.from_pretrained(xlmr_tokenizer_path)
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=130)
    out = tmp_path_factory.mktemp("tiny-xlmr")
    XLMRobertaModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _ner_records(n: int) -> list[dict]:
    return [{"id": str(i), "lang": "en", "tokens": NER_EN[i % 4][0], "tags": NER_EN[i % 4][1]} for i in range(n)]


def _check_results(out: Path, task: str, n_test: int) -> dict:
    res = json.loads((out / "results.json").read_text())
    for key in ("task", "metric", "f1", "precision", "recall", "n_test", "best_epoch", "train_seconds", "config"):
        assert key in res, key
    assert res["task"] == task and res["n_test"] == n_test
    assert 0.0 <= res["f1"] <= 100.0
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == n_test
    return res


def test_ner_finetune_zero_shot_shape(tmp_path: Path, tiny_model: str) -> None:
    test = tmp_path / "zh.txt"
    test.write_text(NER_ZH, encoding="utf-8")
    cfg = FinetuneConfig(task="ner", model=tiny_model, train=_ner_records(20), dev=_ner_records(4), test=str(test),
                         out=str(tmp_path / "out"), epochs=2, batch_size=8, lr=1e-3, progress=False,
                         extra_tests={"en": _ner_records(4)})
    res = run_finetune(cfg)
    _check_results(tmp_path / "out", "ner", 2)
    assert res["test_lang"] == ["zh"] and res["train_lang"] == ["en"]
    assert set(res["per_type"]) <= {"ADE", "Drug"} and "strict_f1" in res
    assert res["extra_tests"]["en"]["n_test"] == 4 and (tmp_path / "out" / "predictions.en.jsonl").exists()
    # the schedule stepped per optimiser step: 3 steps per epoch, decayed to zero at the end
    assert [h["steps"] for h in res["history"]] == [3, 6]
    assert res["history"][-1]["lr_end"] == 0.0 and res["history"][0]["lr_end"] > 0.0
    assert 1 <= res["best_epoch"] <= 2 and res["config"]["train"] == "<20 records>"
    rows = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [len(r["pred"]) for r in rows] == [9, 3]  # one tag per character
    from kbioxlm.tasks.ner import is_valid_iob2

    assert all(is_valid_iob2(r["pred"]) for r in rows)


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_re_finetune_from_release_style_files(tmp_path: Path, tiny_model: str) -> None:
    rows = [{"id": str(i), "sentence": f"@GENE$ variant {i} is {'linked to' if i % 2 else 'unrelated to'} @DISEASE$ .",
             "label": str(i % 2)} for i in range(24)]
    zh = [{"id": str(i), "sentence": f"@GENE$ 变异{i}与@DISEASE$ {'相关' if i % 2 else '无关'}。", "label": str(i % 2)}
          for i in range(6)]
    cfg = FinetuneConfig(task="re", model=tiny_model, train=_write_jsonl(tmp_path / "train.json", rows),
                         dev=_write_jsonl(tmp_path / "dev.json", rows[:6]),
                         test=_write_jsonl(tmp_path / "test_zh.json", zh), out=str(tmp_path / "out"),
                         epochs=1, batch_size=8, max_train_examples=16, progress=False)
    res = run_finetune(cfg)
    _check_results(tmp_path / "out", "re", 6)
    assert res["n_train"] == 16 and res["metric"] == "positive_class_f1" and "accuracy" in res
    pred = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert pred["pred"] in (0, 1) and len(pred["scores"]) == 2


def test_dc_finetune_is_multilabel(tmp_path: Path, tiny_model: str) -> None:
    recs = [{"id": str(i), "lang": "en", "text": f"abstract {i} about hallmark {i % 3} .",
             "label": [int(i % 3 == j) for j in range(3)]} for i in range(12)]
    cfg = FinetuneConfig(task="dc", model=tiny_model, train=recs, dev=recs[:4], test=recs[:5],
                         out=str(tmp_path / "out"), epochs=1, batch_size=4, save_model=True, progress=False)
    res = run_finetune(cfg)
    _check_results(tmp_path / "out", "dc", 5)
    assert "macro_f1" in res and len(res["per_label"]) == 3
    saved = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification" and len(saved["id2label"]) == 3
    pred = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert len(pred["pred"]) == 3 and set(pred["pred"]) <= {0, 1}


def _parser() -> argparse.ArgumentParser:
    from kbioxlm.tasks import cli

    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers(dest="command"))
    return p


def test_cli_finetune_and_bad_input(tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]) -> None:
    train = tmp_path / "train.txt"
    train.write_text("".join(f"-DOCSTART-\t{i}\n\n" + "".join(f"{w}\t{t}\n" for w, t in zip(*NER_EN[i % 4])) + "\n"
                             for i in range(8)), encoding="utf-8")
    test = tmp_path / "zh.txt"
    test.write_text(NER_ZH, encoding="utf-8")
    out = tmp_path / "out"
    args = _parser().parse_args(["finetune", "--task", "ner", "--model", tiny_model, "--train", str(train),
                                 "--dev", str(train), "--test", str(test), "--out", str(out), "--epochs", "1",
                                 "--batch-size", "4", "--no-progress"])
    assert args.func(args) == 0
    assert "ner: f1=" in capsys.readouterr().out
    _check_results(out, "ner", 2)

    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART-\t1\n\nfoo\tO\nbar\tB-\n", encoding="utf-8")
    out2 = tmp_path / "out2"
    args = _parser().parse_args(["finetune", "--task", "ner", "--model", tiny_model, "--train", str(bad),
                                 "--test", str(test), "--out", str(out2), "--no-progress"])
    with pytest.raises(KbioxlmError, match=r"bad\.txt:4"):
        args.func(args)
    assert not (out2 / "results.json").exists()
    with pytest.raises(KbioxlmError, match="unknown task"):
        run_finetune(FinetuneConfig(task="qa", model=tiny_model, train=[], progress=False))


def test_train_batches_cover_every_example_once() -> None:
    import torch

    from kbioxlm.tasks.finetune import _train_batches

    lengths = [(i * 37) % 101 for i in range(250)]
    for grouped in (True, False):
        batches = _train_batches(lengths, 16, torch.Generator().manual_seed(3), grouped)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(250)) and all(1 <= len(b) <= 16 for b in batches)
    again = _train_batches(lengths, 16, torch.Generator().manual_seed(3), True)
    assert again == _train_batches(lengths, 16, torch.Generator().manual_seed(3), True)  # seeded
    # grouping: within a batch lengths are close (sorted windows), so padding is small
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in again) / len(again)
    assert spread < 20
