"""Saved fine-tuned models: stock Auto classes + pipelines give the task's labels; ``kbioxlm predict``
reproduces what ``finetune`` reported; old layouts load or fail in one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from kbioxlm.cli import main
from kbioxlm.tasks.finetune import FinetuneConfig, run_finetune
from kbioxlm.tasks.predict import load_finetuned, run_predict

SENTS = [
    (["Aspirin", "caused", "a", "rash", "."], ["B-Drug", "O", "O", "B-ADE", "O"]),
    (["Fulminant", "hepatic", "failure", "after", "didanosine"], ["B-ADE", "I-ADE", "I-ADE", "O", "B-Drug"]),
    (["No", "events", "were", "seen", "."], ["O", "O", "O", "O", "O"]),
    (["Heparin", "induced", "bleeding"], ["B-Drug", "O", "B-ADE"]),
]


def _tiny(tmp_path_factory: pytest.TempPathFactory, tok_path: Path, arch: str) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    tok = AutoTokenizer.from_pretrained(tok_path)
    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    model = (
        XLMRobertaModel(XLMRobertaConfig(**common))
        if arch == "xlmr"
        else BertModel(BertConfig(pad_token_id=1, **common))
    )
    out = tmp_path_factory.mktemp(f"tiny-{arch}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def tiny_xlmr(tmp_path_factory: pytest.TempPathFactory, xlmr_tokenizer_path: Path) -> str:
    return _tiny(tmp_path_factory, xlmr_tokenizer_path, "xlmr")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, xlmr_tokenizer_path: Path) -> str:
    return _tiny(tmp_path_factory, xlmr_tokenizer_path, "bert")


def _conll(path: Path, sents: list[tuple[list[str], list[str]]], tagged: bool = True) -> Path:
    path.write_text(
        "".join(
            f"-DOCSTART-\t{i}\n\n" + "".join(f"{w}\t{t}\n" if tagged else f"{w}\n" for w, t in zip(*s)) + "\n"
            for i, s in enumerate(sents)
        ),
        encoding="utf-8",
    )
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory, tiny_xlmr: str) -> tuple[Path, dict, Path]:
    d = tmp_path_factory.mktemp("ner-run")
    train = _conll(d / "train.txt", SENTS * 4)
    test = _conll(d / "test.txt", SENTS)
    res = run_finetune(
        FinetuneConfig(
            task="ner",
            model=tiny_xlmr,
            train=str(train),
            test=str(test),
            out=str(d / "out"),
            epochs=6,
            lr=5e-3,
            batch_size=4,
            save_model=True,
            progress=False,
            seed=1,
        )
    )
    return d / "out", res, test


def test_ner_saved_model_loads_with_stock_class_and_pipeline(ner_run: tuple[Path, dict, Path]) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    out, res, _ = ner_run
    saved = out / "model"
    labels = json.loads((saved / "kbioxlm_task.json").read_text())["labels"]
    assert labels == ["O", "B-ADE", "I-ADE", "B-Drug", "I-Drug"]
    stock, info = AutoModelForTokenClassification.from_pretrained(saved, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # nothing newly initialised
    assert [stock.config.id2label[i] for i in range(len(labels))] == labels
    assert stock.config.label2id == {t: i for i, t in enumerate(labels)}
    # the stock class's logits are the full tagger's emissions (the CRF sits on top of them)
    tagger = load_finetuned(saved).model
    tok = AutoTokenizer.from_pretrained(saved)
    enc = tok("Aspirin caused a rash .", return_tensors="pt")
    with torch.no_grad():
        logits = stock.eval()(**enc).logits
        emissions = tagger.emissions(
            enc["input_ids"], enc["attention_mask"], torch.arange(enc["input_ids"].shape[1])[None]
        )
    assert torch.allclose(logits, emissions, atol=1e-5)
    tags = pipeline("token-classification", model=str(saved), ignore_labels=[])("Aspirin caused a rash .")
    assert tags and {t["entity"] for t in tags} <= set(labels)
    assert (saved / "crf.safetensors").is_file() and not list(saved.glob("*.pt"))


def test_predict_reproduces_finetune_f1_and_predictions(
    ner_run: tuple[Path, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, res, test = ner_run
    assert res["f1"] > 0  # a real score to reproduce, not 0 == 0
    pred_file = tmp_path / "pred.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(out / "model"),
                "--input",
                str(test),
                "--out",
                str(pred_file),
                "--format",
                "jsonl",
                "--no-progress",
            ]
        )
        == 0
    )
    assert f"f1={res['f1']:.2f}" in capsys.readouterr().out
    assert _rows(pred_file) == _rows(out / "predictions.jsonl")
    again = run_predict(out / "model", test, tmp_path / "pred.txt", progress=False)
    assert again["f1"] == res["f1"] and again["precision"] == res["precision"] and again["format"] == "conll"
    # CoNLL out: token, gold, prediction; read back, the last column is the prediction
    from kbioxlm.tasks.readers import read_ner

    back = read_ner(tmp_path / "pred.txt")
    assert [r["tags"] for r in back] == [r["pred"] for r in _rows(out / "predictions.jsonl")]
    assert (tmp_path / "pred.txt").read_text().splitlines()[2].split("\t")[:2] == ["Aspirin", "B-Drug"]


def test_predict_unlabelled_input_gives_the_same_tags_and_no_score(
    ner_run: tuple[Path, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = ner_run
    plain = _conll(tmp_path / "plain.txt", SENTS, tagged=False)
    assert (
        main(
            [
                "predict",
                "--model",
                str(out / "model"),
                "--input",
                str(plain),
                "--out",
                str(tmp_path / "p.txt"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "not scored" in capsys.readouterr().out
    lines = [ln.split("\t") for ln in (tmp_path / "p.txt").read_text().splitlines() if ln and not ln.startswith("-DOC")]
    assert [ln[1] for ln in lines] == [t for r in _rows(out / "predictions.jsonl") for t in r["pred"]]
    assert all(len(ln) == 2 for ln in lines)


def test_predict_bad_input_and_old_pickled_model_fail_in_one_line(
    ner_run: tuple[Path, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = ner_run
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART-\t1\n\nAspirin\tB-Drug\nrash\n", encoding="utf-8")  # half-tagged sentence
    target = tmp_path / "never.txt"
    assert main(["predict", "--model", str(out / "model"), "--input", str(bad), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "bad.txt:4" in err and len(err.splitlines()) == 1 and not target.exists()
    old = tmp_path / "old-model"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (old / "ner_head.pt").write_bytes(b"\x80\x04pickle")
    assert main(["predict", "--model", str(old), "--input", str(bad), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "old pickled format (ner_head.pt)" in err and len(err.splitlines()) == 1 and not target.exists()


def test_previous_safetensors_ner_layout_still_loads(ner_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """The layout saved before this change (AutoModel encoder + ner_head.safetensors + ner_head.json)."""
    from safetensors.torch import save_file

    out, res, test = ner_run
    new = load_finetuned(out / "model").model
    old = tmp_path / "old"
    new.encoder.save_pretrained(old)
    load_finetuned(out / "model").tokenizer.save_pretrained(old)
    head = {f"classifier.{k}": v for k, v in new.classifier.state_dict().items()}
    head.update({f"crf.{k}": v for k, v in new.crf.state_dict().items()})
    save_file({k: v.contiguous() for k, v in head.items()}, str(old / "ner_head.safetensors"))
    (old / "ner_head.json").write_text(json.dumps({"labels": new.labels}))
    assert run_predict(old, test, tmp_path / "p.jsonl", progress=False)["f1"] == res["f1"]


def _seqcls_records(n: int, width: int | None) -> list[dict]:
    rng = random.Random(0)
    words = ["gene", "disease", "protein", "cancer", "cell", "growth", "signal", "tumour"]
    out = []
    for i in range(n):
        y = i % 2 if width is None else [int((i + j) % 3 == 0) for j in range(width)]
        key = "binds causes" if (y if width is None else y[0]) else "near beside"
        out.append({"id": str(i), "sentence": f"{rng.choice(words)} {key} {rng.choice(words)} .", "label": y})
    return out


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_re_saved_model_pipeline_labels_and_predict_f1(tiny_xlmr: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, pipeline

    train = _jsonl(tmp_path / "train.json", _seqcls_records(24, None))
    test = _jsonl(tmp_path / "test.json", _seqcls_records(10, None))
    res = run_finetune(
        FinetuneConfig(
            task="re",
            model=tiny_xlmr,
            train=str(train),
            test=str(test),
            out=str(tmp_path / "out"),
            epochs=2,
            lr=1e-3,
            batch_size=8,
            save_model=True,
            progress=False,
        )
    )
    saved = tmp_path / "out" / "model"
    stock, info = AutoModelForSequenceClassification.from_pretrained(saved, output_loading_info=True)
    assert not info["missing_keys"] and stock.config.id2label == {0: "0", 1: "1"}
    assert stock.config.problem_type == "single_label_classification"
    scores = pipeline("text-classification", model=str(saved), top_k=None)(["gene binds causes cancer ."])[0]
    assert {s["label"] for s in scores} == {"0", "1"}
    again = run_predict(saved, test, tmp_path / "p.jsonl", progress=False)
    assert again["f1"] == res["f1"] and _rows(tmp_path / "p.jsonl") == _rows(tmp_path / "out" / "predictions.jsonl")
    card = (saved / "README.md").read_text()
    assert f"{res['f1']:.2f}" in card


def test_dc_normalized_head_saved_for_stock_class_and_predict(tiny_bert: str, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification

    train = _jsonl(tmp_path / "train.json", _seqcls_records(24, 3))
    test = _jsonl(tmp_path / "test.json", _seqcls_records(9, 3))
    res = run_finetune(
        FinetuneConfig(
            task="dc",
            model=tiny_bert,
            train=str(train),
            test=str(test),
            out=str(tmp_path / "out"),
            head="normalized",
            head_lr=1e-2,
            adapt_norm=True,
            epochs=2,
            batch_size=8,
            save_model=True,
            progress=False,
        )
    )
    saved = tmp_path / "out" / "model"
    stock, info = AutoModelForSequenceClassification.from_pretrained(saved, output_loading_info=True)
    assert stock.config.problem_type == "multi_label_classification" and stock.config.id2label == {
        0: "0",
        1: "1",
        2: "2",
    }
    # only the part the normalized head never had (BERT's pooler) is new; the classifier is ours
    assert info["missing_keys"] and all("pooler" in k for k in info["missing_keys"])
    full = load_finetuned(saved).model
    ids = torch.tensor([[0, 1000, 2000, 3000, 2, 1], [0, 1500, 2500, 4000, 5000, 2]])
    mask = (ids != 1).long()
    with torch.no_grad():
        h = stock.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        assert torch.allclose(stock.classifier(pooled), full(ids, mask).logits, atol=1e-4)
    again = run_predict(saved, test, tmp_path / "p.jsonl", progress=False)  # adapt_norm applied again
    assert again["f1"] == res["f1"] and _rows(tmp_path / "p.jsonl") == _rows(tmp_path / "out" / "predictions.jsonl")
    data = ModelCard.load(saved / "README.md").data
    assert data.pipeline_tag == "text-classification" and data.base_model == tiny_bert and data.language == ["en"]


@pytest.mark.shared
@pytest.mark.slow
def test_real_small_model_ade_save_load_predict(small_model_path: Path, tmp_path: Path) -> None:
    """e5-small-zhen, 40 English ADE train / 40 test sentences, 1 epoch."""
    from conftest import shared_path
    from transformers import AutoModelForTokenClassification, pipeline

    from kbioxlm.tasks.readers import read_ner

    ade = shared_path("data", "kbioxlm-release", "ner", "ade", "eng_to_zh")
    sents = read_ner(ade / "train.txt")
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in sents[:40]), encoding="utf-8")
    test.write_text("".join(json.dumps(r) + "\n" for r in sents[40:80]), encoding="utf-8")
    res = run_finetune(
        FinetuneConfig(
            task="ner",
            model=str(small_model_path),
            train=str(train),
            test=str(test),
            out=str(tmp_path / "out"),
            epochs=1,
            batch_size=8,
            max_length=128,
            save_model=True,
            progress=False,
            num_threads=1,
        )
    )
    saved = tmp_path / "out" / "model"
    stock, info = AutoModelForTokenClassification.from_pretrained(saved, output_loading_info=True)
    assert not info["missing_keys"] and set(stock.config.label2id) == {"O", "B-ADE", "I-ADE", "B-Drug", "I-Drug"}
    tags = pipeline("token-classification", model=str(saved), ignore_labels=[])("Aspirin caused a rash .")
    assert {t["entity"] for t in tags} <= set(stock.config.label2id)
    again = run_predict(saved, test, tmp_path / "p.jsonl", num_threads=1, progress=False)
    assert again["f1"] == res["f1"] and again["n"] == 40
