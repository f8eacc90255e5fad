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
NER_ZH = (
    "-DOCSTART-\t1\n\n服\tO\n用\tO\n阿\tB-Drug\n司\tI-Drug\n匹\tI-Drug\n林\tI-Drug\n后\tO\n出\tB-ADE\n血\tI-ADE\n\n"
    "-DOCSTART-\t2\n\n皮\tB-ADE\n疹\tI-ADE\n。\tO\n"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, xlmr_tokenizer_path: Path) -> str:
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    tok = AutoTokenizer.from_pretrained(xlmr_tokenizer_path)
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
    )
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
    cfg = FinetuneConfig(
        task="ner",
        model=tiny_model,
        train=_ner_records(20),
        dev=_ner_records(4),
        test=str(test),
        out=str(tmp_path / "out"),
        epochs=2,
        batch_size=8,
        lr=1e-3,
        progress=False,
        extra_tests={"en": _ner_records(4)},
    )
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
    rows = [
        {
            "id": str(i),
            "sentence": f"@GENE$ variant {i} is {'linked to' if i % 2 else 'unrelated to'} @DISEASE$ .",
            "label": str(i % 2),
        }
        for i in range(24)
    ]
    zh = [
        {"id": str(i), "sentence": f"@GENE$ 变异{i}与@DISEASE$ {'相关' if i % 2 else '无关'}。", "label": str(i % 2)}
        for i in range(6)
    ]
    cfg = FinetuneConfig(
        task="re",
        model=tiny_model,
        train=_write_jsonl(tmp_path / "train.json", rows),
        dev=_write_jsonl(tmp_path / "dev.json", rows[:6]),
        test=_write_jsonl(tmp_path / "test_zh.json", zh),
        out=str(tmp_path / "out"),
        epochs=1,
        batch_size=8,
        max_train_examples=16,
        progress=False,
    )
    res = run_finetune(cfg)
    _check_results(tmp_path / "out", "re", 6)
    assert res["n_train"] == 16 and res["metric"] == "positive_class_f1" and "accuracy" in res
    pred = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert pred["pred"] in (0, 1) and len(pred["scores"]) == 2


def test_dc_finetune_is_multilabel(tmp_path: Path, tiny_model: str) -> None:
    recs = [
        {
            "id": str(i),
            "lang": "en",
            "text": f"abstract {i} about hallmark {i % 3} .",
            "label": [int(i % 3 == j) for j in range(3)],
        }
        for i in range(12)
    ]
    cfg = FinetuneConfig(
        task="dc",
        model=tiny_model,
        train=recs,
        dev=recs[:4],
        test=recs[:5],
        out=str(tmp_path / "out"),
        epochs=1,
        batch_size=4,
        save_model=True,
        progress=False,
    )
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
    train.write_text(
        "".join(
            f"-DOCSTART-\t{i}\n\n" + "".join(f"{w}\t{t}\n" for w, t in zip(*NER_EN[i % 4])) + "\n" for i in range(8)
        ),
        encoding="utf-8",
    )
    test = tmp_path / "zh.txt"
    test.write_text(NER_ZH, encoding="utf-8")
    out = tmp_path / "out"
    args = _parser().parse_args(
        [
            "finetune",
            "--task",
            "ner",
            "--model",
            tiny_model,
            "--train",
            str(train),
            "--dev",
            str(train),
            "--test",
            str(test),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    assert "ner: f1=" in capsys.readouterr().out
    _check_results(out, "ner", 2)

    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART-\t1\n\nfoo\tO\nbar\tB-\n", encoding="utf-8")
    out2 = tmp_path / "out2"
    args = _parser().parse_args(
        [
            "finetune",
            "--task",
            "ner",
            "--model",
            tiny_model,
            "--train",
            str(bad),
            "--test",
            str(test),
            "--out",
            str(out2),
            "--no-progress",
        ]
    )
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


def test_dc_normalized_head_with_head_lr_saves_head(tmp_path: Path, tiny_model: str) -> None:
    recs = [
        {
            "id": str(i),
            "lang": "en",
            "text": f"abstract {i} about hallmark {i % 3} .",
            "label": [int(i % 3 == j) for j in range(3)],
        }
        for i in range(13)
    ]  # 13: last batch of one
    cfg = FinetuneConfig(
        task="dc",
        model=tiny_model,
        train=recs,
        dev=recs[:4],
        test=recs[:5],
        head="normalized",
        head_lr=1e-2,
        out=str(tmp_path / "out"),
        epochs=1,
        batch_size=4,
        save_model=True,
        progress=False,
    )
    res = run_finetune(cfg)
    _check_results(tmp_path / "out", "dc", 5)
    assert res["config"]["head"] == "normalized" and res["config"]["head_lr"] == 1e-2
    from safetensors.torch import load_file

    model_dir = tmp_path / "out" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 3
    head = load_file(str(model_dir / "seqcls_head.safetensors"))
    assert head["classifier.weight"].shape[0] == 3 and "norm.running_mean" in head
    assert not [p.name for p in model_dir.iterdir() if p.suffix in (".pt", ".bin", ".pkl", ".pth")]  # no pickle
    assert (tmp_path / "out" / "model" / "config.json").exists()
    with pytest.raises(KbioxlmError, match="unknown head"):
        run_finetune(
            FinetuneConfig(
                task="dc",
                model=tiny_model,
                train=recs,
                test=recs[:2],
                head="pooler",
                out=str(tmp_path / "bad"),
                epochs=1,
                progress=False,
            )
        )


def test_seqcls_model_reports_the_parameters_the_checkpoint_lacks(tiny_model: str) -> None:
    from kbioxlm.tasks.seqcls import build_normalized_model, build_seqcls_model

    model, new = build_seqcls_model(tiny_model, 2, multilabel=False, classifier_dropout=0.0)
    names = {n for n, _ in model.named_parameters()}
    assert new and new <= names and all(n.startswith("classifier.") for n in new)
    assert model.config.classifier_dropout == 0.0
    model, new = build_normalized_model(tiny_model, 4, multilabel=True)
    assert new == {"classifier.weight", "classifier.bias"}


class _ConstantishEncoder:
    """Stands in for an embedding-trained encoder: every input maps to one large common vector plus a
    small label-dependent offset, the regime where a raw linear head learns only the prior."""

    def __init__(self, hidden: int) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.common = torch.randn(hidden, generator=g) * 10.0
        self.signal = torch.randn(hidden, generator=g) * 0.2
        self.config = argparse.Namespace(hidden_size=hidden)


def test_normalized_head_learns_small_offsets_a_raw_head_misses() -> None:
    import torch

    from kbioxlm.tasks.seqcls import NormalizedPoolingClassifier

    torch.manual_seed(0)
    fake = _ConstantishEncoder(16)

    class Enc(torch.nn.Module):
        config = fake.config

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> argparse.Namespace:
            y = input_ids[:, :1].float()  # token 0 carries the label
            noise = torch.randn(input_ids.shape[0], 1, 16) * 0.05
            h = fake.common + y.unsqueeze(-1) * fake.signal + noise
            return argparse.Namespace(last_hidden_state=h.expand(-1, input_ids.shape[1], -1))

    def train(model: torch.nn.Module, forward: object) -> float:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(60):
            y = torch.randint(0, 2, (8,))
            ids = torch.cat([y[:, None], torch.ones(8, 3, dtype=torch.long)], 1)
            loss = forward(ids, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        y = torch.arange(64) % 2
        ids = torch.cat([y[:, None], torch.ones(64, 3, dtype=torch.long)], 1)
        with torch.no_grad():
            return float((forward(ids, None).argmax(-1) == y).float().mean())

    net = NormalizedPoolingClassifier(Enc(), 2, multilabel=False, dropout=0.0)
    acc_norm = train(
        net,
        lambda ids, y: (
            net(ids, torch.ones_like(ids), y).loss if y is not None else net(ids, torch.ones_like(ids)).logits
        ),
    )
    raw = torch.nn.Linear(16, 2)
    enc = Enc()

    def raw_forward(ids: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        logits = raw(enc.forward(ids, torch.ones_like(ids)).last_hidden_state.mean(1))
        return torch.nn.functional.cross_entropy(logits, y) if y is not None else logits

    acc_raw = train(raw, raw_forward)
    assert acc_norm >= 0.95 and acc_raw <= 0.7, (acc_norm, acc_raw)


def test_adapt_norm_uses_the_evaluated_inputs_statistics_then_restores(tmp_path: Path, tiny_model: str) -> None:
    import torch

    from kbioxlm.tasks.seqcls import build_normalized_model

    net, _ = build_normalized_model(tiny_model, 2, multilabel=False)
    net.eval()
    before = net.norm.running_mean.clone(), net.norm.running_var.clone()
    ids = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1], [0, 9, 10, 11, 2]])
    mask = (ids != 1).long()
    batches = [{"input_ids": ids[:2], "attention_mask": mask[:2]}, {"input_ids": ids[2:], "attention_mask": mask[2:]}]
    with torch.no_grad():
        pooled = net.pool(ids, mask)
        with net.statistics_of(batches):
            assert torch.allclose(net.norm.running_mean, pooled.mean(0), atol=1e-6)
            assert torch.allclose(net.norm.running_var, pooled.var(0), atol=1e-6)
            z = net.norm(pooled)  # standardised with these inputs' own statistics
            assert torch.allclose(z.mean(0), torch.zeros_like(z[0]), atol=1e-4)
    assert torch.equal(net.norm.running_mean, before[0]) and torch.equal(net.norm.running_var, before[1])

    recs = [
        {"id": str(i), "lang": "en", "text": f"gene {i} {'causes' if i % 2 else 'spares'} disease .", "label": i % 2}
        for i in range(10)
    ]
    res = run_finetune(
        FinetuneConfig(
            task="re",
            model=tiny_model,
            train=recs,
            dev=recs[:4],
            test=recs[:6],
            head="normalized",
            adapt_norm=True,
            out=str(tmp_path / "out"),
            epochs=1,
            batch_size=4,
            progress=False,
        )
    )
    assert res["config"]["adapt_norm"] is True and res["n_test"] == 6
    with pytest.raises(KbioxlmError, match="adapt_norm needs head: normalized"):
        run_finetune(
            FinetuneConfig(
                task="re",
                model=tiny_model,
                train=recs,
                test=recs[:2],
                adapt_norm=True,
                out=str(tmp_path / "bad"),
                epochs=1,
                progress=False,
            )
        )


def test_ner_save_model_writes_no_pickle(tmp_path: Path, tiny_model: str) -> None:
    """--save-model: the CRF head goes to safetensors + JSON, never torch.save (a pickle)."""
    from safetensors.torch import load_file

    cfg = FinetuneConfig(
        task="ner",
        model=tiny_model,
        train=_ner_records(8),
        test=_ner_records(2),
        out=str(tmp_path / "out"),
        epochs=1,
        batch_size=8,
        save_model=True,
        progress=False,
    )
    run_finetune(cfg)
    model_dir = tmp_path / "out" / "model"
    assert not [p.name for p in model_dir.iterdir() if p.suffix in (".pt", ".bin", ".pkl", ".pth")]
    labels = json.loads((model_dir / "kbioxlm_task.json").read_text())["labels"]
    head = load_file(str(model_dir / "model.safetensors"))
    assert labels[0] == "O" and head["classifier.weight"].shape[0] == len(labels)
    assert load_file(str(model_dir / "crf.safetensors"))["transitions"].shape == (len(labels), len(labels))
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((model_dir / "model.safetensors").stat().st_mode) == 0o666 & ~umask  # not private 0600
