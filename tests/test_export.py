"""kbioxlm export: plain HF checkpoint, full vocabulary restored, model card, trimmed round trip."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

from kbioxlm.cli import main
from kbioxlm.pretrain.export import export_checkpoint
from kbioxlm.pretrain.model import KnowledgeAnchoredModel

V = 300
KEPT = sorted(set(range(0, V, 3)) | {1, 2, V - 1})
NOT_KEPT = [i for i in range(V) if i not in KEPT]


def run_cli(*argv: str) -> int:
    """Run a sub-command through the real ``kbioxlm`` entry point (one-line errors → exit 2)."""
    return main(list(argv))


def make_original(tmp_path, arch: str):
    torch.manual_seed(0)
    common = dict(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
    )
    if arch == "xlmr":
        hf = XLMRobertaForMaskedLM(XLMRobertaConfig(type_vocab_size=1, **common))
        bias = hf.lm_head.bias
    else:
        hf = BertForMaskedLM(BertConfig(hidden_act="gelu_new", **common))
        bias = hf.cls.predictions.bias
    with torch.no_grad():
        bias.normal_()
    d = tmp_path / f"orig-{arch}"
    hf.save_pretrained(d)
    return d


def train_one_step(model: KnowledgeAnchoredModel) -> None:
    """Move every trained weight away from its initial value, so the export can't pass by accident."""
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, V - 1, (4, 10), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 3] = torch.tensor(KEPT)[torch.randint(len(KEPT), (4,), generator=g)]
    out = model(
        ids,
        torch.ones_like(ids),
        mlm_labels=labels,
        task_ids=torch.tensor([0, 1, 2, 3]),
        pair_labels=torch.tensor([-100, -100, -100, 1]),
    )
    out.loss.backward()
    opt.step()


@pytest.mark.parametrize("arch", ["xlmr", "bert"])
def test_export_loads_with_automodel_and_matches_toolkit_logits(tmp_path, arch):
    orig_dir = make_original(tmp_path, arch)
    model = KnowledgeAnchoredModel.from_pretrained(orig_dir, kept_ids=KEPT)
    train_one_step(model)
    ckpt = tmp_path / "run" / "checkpoint-1"
    model.save_pretrained(ckpt)
    (tmp_path / "run" / "kbioxlm_config.json").write_text(
        json.dumps({"train_files": "e.jsonl,f.jsonl", "learning_rate": 5e-5})
    )
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    out = tmp_path / "export"
    assert run_cli("export", "--checkpoint", str(ckpt), "--out", str(out)) == 0
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()

    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(hf).__name__ == ("XLMRobertaForMaskedLM" if arch == "xlmr" else "BertForMaskedLM")
    assert hf.config.vocab_size == V and hf.config.tie_word_embeddings is False
    model.eval()
    ids = torch.randint(4, V, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exported = hf(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        toolkit = model.mlm_logits(ids, torch.ones_like(ids))
    assert exported.shape[-1] == V
    torch.testing.assert_close(exported[..., KEPT], toolkit, rtol=0, atol=1e-5)
    # rows outside the kept set come from the original LM head (weight and bias)
    orig = AutoModelForMaskedLM.from_pretrained(orig_dir)
    decoder = hf.get_output_embeddings()
    torch.testing.assert_close(decoder.weight[NOT_KEPT], orig.get_output_embeddings().weight[NOT_KEPT])
    orig_bias = orig.lm_head.bias if arch == "xlmr" else orig.cls.predictions.bias
    torch.testing.assert_close(decoder.bias[NOT_KEPT], orig_bias[NOT_KEPT])
    # and the trained kept rows differ from the original ones
    assert not torch.allclose(decoder.weight[KEPT], orig.get_output_embeddings().weight[KEPT])
    # AutoModel loads the encoder with the trained weights
    enc = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(input_ids=ids).last_hidden_state, model.encoder(input_ids=ids).last_hidden_state)
    card = (out / "README.md").read_text()
    assert str(orig_dir) in card and "`e.jsonl`" in card and "**Training steps:** 1" in card and "learning_rate" in card


def test_export_without_original_uses_input_embeddings(tmp_path):
    config = XLMRobertaConfig(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
    )
    model = KnowledgeAnchoredModel.from_config(config, kept_ids=KEPT)
    train_one_step(model)
    model.save_pretrained(tmp_path / "ckpt")
    summary = export_checkpoint(tmp_path / "ckpt", tmp_path / "out")
    assert summary["rows_outside_kept_from"].startswith("trained input embeddings")
    hf = AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    emb = model.encoder.get_input_embeddings().weight
    torch.testing.assert_close(hf.get_output_embeddings().weight[NOT_KEPT], emb[NOT_KEPT])
    assert torch.count_nonzero(hf.get_output_embeddings().bias[NOT_KEPT]) == 0


def test_export_bad_checkpoint_fails_cleanly(tmp_path):
    (tmp_path / "empty").mkdir()
    assert run_cli("export", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "out")) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.shared
def test_export_undoes_vocab_trim(tmp_path, xlmr_tokenizer_path):
    """Trim a full-vocabulary model, train on the trimmed one, export back to 250,002 ids."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=40,
        type_vocab_size=1,
    )
    full = XLMRobertaForMaskedLM(cfg)
    with torch.no_grad():
        full.lm_head.bias.normal_()
    full.save_pretrained(tmp_path / "full")
    full_tok = AutoTokenizer.from_pretrained(str(xlmr_tokenizer_path))
    texts = ["二甲双胍治疗2型糖尿病", "metformin for type 2 diabetes"]
    seen = sorted({i for t in texts for i in full_tok(t)["input_ids"]})
    (tmp_path / "kept.json").write_text(json.dumps({"kept_ids": seen}))
    assert (
        run_cli(
            "vocab",
            "trim",
            "--model",
            str(tmp_path / "full"),
            "--tokenizer",
            str(xlmr_tokenizer_path),
            "--kept",
            str(tmp_path / "kept.json"),
            "--out",
            str(tmp_path / "trimmed"),
            "--charsets",
            "none",
        )
        == 0
    )
    vocab_map = json.loads((tmp_path / "trimmed" / "vocab_map.json").read_text())
    inv = {o: n for n, o in enumerate(vocab_map)}
    model = KnowledgeAnchoredModel.from_pretrained(tmp_path / "trimmed", kept_ids=[inv[i] for i in seen])
    assert model.vocab_map == vocab_map
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "trimmed"))
    enc = tok(texts, padding=True, return_tensors="pt")
    labels = torch.where(enc.attention_mask.bool(), enc.input_ids, torch.full_like(enc.input_ids, -100))
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    model(enc.input_ids, enc.attention_mask, mlm_labels=labels).loss.backward()
    opt.step()
    model.save_pretrained(tmp_path / "ckpt")
    assert (
        run_cli(
            "export",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--out",
            str(tmp_path / "out"),
            "--full-vocab-from",
            str(tmp_path / "full"),
            "--tokenizer",
            str(xlmr_tokenizer_path),
        )
        == 0
    )
    hf = AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    out_tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert hf.config.vocab_size == len(out_tok) == 250002 and not (tmp_path / "out" / "vocab_map.json").exists()
    enc_full = out_tok(texts, padding=True, return_tensors="pt")
    assert torch.equal(enc_full.input_ids, torch.tensor(vocab_map)[enc.input_ids])
    model.eval()
    with torch.no_grad():
        exported = hf(**enc_full).logits
        toolkit = model.mlm_logits(enc.input_ids, enc.attention_mask)
    torch.testing.assert_close(exported[..., seen], toolkit, rtol=0, atol=1e-5)
    # ids that were trimmed away keep the original model's embeddings and head rows
    gone = [i for i in range(1000, 1100) if i not in inv]
    torch.testing.assert_close(hf.get_input_embeddings().weight[gone], full.get_input_embeddings().weight[gone])
    torch.testing.assert_close(hf.get_output_embeddings().bias[gone], full.lm_head.bias[gone])


def _export_run(tmp_path, with_license: bool = True):
    """A one-step run folder (RUN/checkpoints/checkpoint-1, RUN/eval.jsonl, RUN/kbioxlm_config.json)."""
    orig_dir = make_original(tmp_path, "xlmr")
    if with_license:
        (orig_dir / "README.md").write_text("---\nlicense: mit\nlanguage: [en]\n---\n# base\n")
    model = KnowledgeAnchoredModel.from_pretrained(orig_dir, kept_ids=KEPT)
    train_one_step(model)
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "checkpoint-1"
    model.save_pretrained(ckpt)
    (run / "e.jsonl").write_text(json.dumps({"id": "1", "lang": "en", "text": "x"}) + "\n")
    (run / "p.jsonl").write_text(
        json.dumps({"id": "2", "lang_a": "en", "lang_b": "zh", "text_a": "x", "text_b": "y"}) + "\n"
    )
    (run / "kbioxlm_config.json").write_text(
        json.dumps({"train_files": f"{run / 'e.jsonl'},{run / 'p.jsonl'}", "learning_rate": 5e-5, "global_step": 1})
    )
    (run / "eval.jsonl").write_text(
        json.dumps({"step": 0, "acc_mlm": 0.0123, "n_mlm": 40, "loss": 6.5})
        + "\n"
        + json.dumps({"step": 1, "acc_mlm": 0.3456, "n_mlm": 40, "loss": 5.25})
        + "\n"
    )
    return orig_dir, ckpt


def test_export_card_has_hub_metadata_and_measured_numbers(tmp_path):
    from huggingface_hub import ModelCard

    orig_dir, ckpt = _export_run(tmp_path)
    probe = tmp_path / "probe.json"
    probe.write_text(
        json.dumps(
            {
                "term_retrieval": {
                    "n": 50,
                    "layer": 2,
                    "en_zh": {"acc1": 35.12, "mrr": 44.43},
                    "zh_en": {"acc1": 31.8, "mrr": 40.34},
                },
                "sentence_retrieval": None,
            }
        )
    )
    bench = tmp_path / "results.jsonl"
    bench.write_text(
        "".join(
            json.dumps(
                {
                    "model": "m",
                    "dataset": "ade",
                    "dataset_label": "ADE",
                    "direction": "en-zh",
                    "setting": "zero-shot",
                    "metric": "entity_f1",
                    "f1": f,
                    "seed": s,
                }
            )
            + "\n"
            for s, f in ((1, 50.0), (2, 54.0))
        )
    )
    out = tmp_path / "export"
    assert (
        run_cli(
            "export", "--checkpoint", str(ckpt), "--out", str(out), "--probe", str(probe), "--benchmark", str(bench)
        )
        == 0
    )
    data = ModelCard.load(out / "README.md").data
    assert data.language == ["en", "zh"] and data.license == "mit" and data.pipeline_tag == "fill-mask"
    assert data.base_model == str(orig_dir)
    text = (out / "README.md").read_text()
    assert "| 1 | 0.3456 | 40 | 5.25 |" in text and "| 0 | 0.0123 | 40 | 6.50 |" in text  # eval.jsonl, both rows
    assert "| term retrieval | en→zh | 50 | 2 | 35.12 | 44.43 |" in text
    assert "| m | ADE | en-zh | zero-shot | entity_f1 | 52.00 ± 2.83 | 2 |" in text
    assert '"PATH"' not in text and str(tmp_path / "run") not in text  # no placeholder, no training paths


def test_export_license_unknown_base_model_override_and_bad_probe(tmp_path, capsys):
    from huggingface_hub import ModelCard

    _, ckpt = _export_run(tmp_path, with_license=False)
    out = tmp_path / "export"
    assert (
        run_cli(
            "export",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--base-model",
            "intfloat/multilingual-e5-small",
            "--dataset",
            "bigbio/ade_corpus",
        )
        == 0
    )
    data = ModelCard.load(out / "README.md").data
    assert data.license == "unknown" and data.base_model == "intfloat/multilingual-e5-small"
    assert data.datasets == ["bigbio/ade_corpus"]
    bad = tmp_path / "probe.json"
    bad.write_text("{}")
    assert run_cli("export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "e2"), "--probe", str(bad)) == 2
    assert "not a probe.json" in capsys.readouterr().err and not (tmp_path / "e2").exists()


def test_export_push_to_hub_uploads_the_folder(tmp_path, monkeypatch, capsys):
    from kbioxlm import modelcard

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw.get("private")))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload", repo_id, sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(modelcard, "HfApi", FakeApi)
    _, ckpt = _export_run(tmp_path)
    out = tmp_path / "export"
    # the card's base_model is a local path here: refused before anything is sent
    assert run_cli("export", "--checkpoint", str(ckpt), "--out", str(out), "--push-to-hub", "me/kbx") == 2
    assert "base_model" in capsys.readouterr().err and calls == []
    assert (
        run_cli(
            "export",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--overwrite",
            "--push-to-hub",
            "me/kbx",
            "--base-model",
            "FacebookAI/xlm-roberta-base",
            "--private",
        )
        == 0
    )
    assert calls[0] == ("create", "me/kbx", True)
    assert calls[1][0] == "upload" and {"README.md", "config.json", "model.safetensors"} <= set(calls[1][2])
    assert "https://huggingface.co/me/kbx/commit/abc" in capsys.readouterr().out
