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
    common = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=40)
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
    out = model(ids, torch.ones_like(ids), mlm_labels=labels, task_ids=torch.tensor([0, 1, 2, 3]), pair_labels=torch.tensor([-100, -100, -100, 1]))
    out.loss.backward()
    opt.step()


@pytest.mark.parametrize("arch", ["xlmr", "bert"])
def test_export_loads_with_automodel_and_matches_toolkit_logits(tmp_path, arch):
    orig_dir = make_original(tmp_path, arch)
    model = KnowledgeAnchoredModel.from_pretrained(orig_dir, kept_ids=KEPT)
    train_one_step(model)
    ckpt = tmp_path / "run" / "checkpoint-1"
    model.save_pretrained(ckpt)
    (tmp_path / "run" / "kbioxlm_config.json").write_text(json.dumps({"train_files": "e.jsonl,f.jsonl", "learning_rate": 5e-5}))
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
    config = XLMRobertaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=40, type_vocab_size=1)
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
    cfg = XLMRobertaConfig(vocab_size=250002, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=40, type_vocab_size=1)
    full = XLMRobertaForMaskedLM(cfg)
    with torch.no_grad():
        full.lm_head.bias.normal_()
    full.save_pretrained(tmp_path / "full")
    full_tok = AutoTokenizer.from_pretrained(str(xlmr_tokenizer_path))
    texts = ["二甲双胍治疗2型糖尿病", "metformin for type 2 diabetes"]
    seen = sorted({i for t in texts for i in full_tok(t)["input_ids"]})
    (tmp_path / "kept.json").write_text(json.dumps({"kept_ids": seen}))
    assert run_cli("vocab", "trim", "--model", str(tmp_path / "full"), "--tokenizer", str(xlmr_tokenizer_path),
                   "--kept", str(tmp_path / "kept.json"), "--out", str(tmp_path / "trimmed"), "--charsets", "none") == 0
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
    assert run_cli("export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"),
                   "--full-vocab-from", str(tmp_path / "full"), "--tokenizer", str(xlmr_tokenizer_path)) == 0
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
