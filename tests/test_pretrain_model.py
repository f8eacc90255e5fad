"""KnowledgeAnchoredModel: reduced head, LM-head initialisation, losses, pair head, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, BertModel, XLMRobertaConfig, XLMRobertaForMaskedLM

from kbioxlm.errors import KbioxlmError
from kbioxlm.pretrain import TASK_IDS, PRETRAIN_TASKS
from kbioxlm.pretrain.model import KnowledgeAnchoredModel
from kbioxlm.schema import PASSAGE_LABELS

V = 300
MASK = V - 1


def xlmr_config(vocab: int = V) -> XLMRobertaConfig:
    return XLMRobertaConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def bert_config(vocab: int = V) -> BertConfig:
    return BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        hidden_act="gelu_new",
        pad_token_id=1,
    )


def randomise_head_bias(model: torch.nn.Module) -> None:
    """Random checkpoints have zero LM-head bias; make it non-zero so slicing errors show."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lm_head.bias") or name.endswith("predictions.bias"):
                p.normal_()


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = XLMRobertaForMaskedLM(xlmr_config())
    randomise_head_bias(hf)
    d = tmp_path_factory.mktemp("xlmr")
    hf.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    torch.manual_seed(1)
    hf = BertForMaskedLM(bert_config())
    randomise_head_bias(hf)
    d = tmp_path_factory.mktemp("bert")
    hf.save_pretrained(d)
    return d


def batch(seed: int = 0, rows: int = 4, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, MASK, (rows, length), generator=g)
    ids[:, 0] = 0
    attn = torch.ones_like(ids)
    attn[-1, -3:] = 0
    ids[-1, -3:] = 1
    labels = torch.full_like(ids, -100)
    for r in range(rows):
        pos = torch.randperm(length - 4, generator=g)[:3] + 1
        labels[r, pos] = ids[r, pos]
        ids[r, pos] = MASK
    return ids, attn, labels


KEPT = sorted(set(range(0, V, 2)) | {1, 3, MASK})


def kept_batch(seed: int = 0):
    """A batch whose masked labels are all in KEPT (even ids)."""
    ids, attn, labels = batch(seed)
    labels = torch.where(labels >= 0, labels - labels % 2, labels)
    return ids, attn, labels


def test_reduced_head_equals_full_head_on_kept_ids(xlmr_dir):
    full = KnowledgeAnchoredModel.from_pretrained(xlmr_dir).eval()
    red = KnowledgeAnchoredModel.from_pretrained(xlmr_dir, kept_ids=KEPT).eval()
    assert red.mlm_head.decoder.out_features == len(KEPT)
    ids, attn, labels = kept_batch()
    with torch.no_grad():
        lf = full.mlm_logits(ids, attn)
        lr = red.mlm_logits(ids, attn)
        out_f = full(ids, attn, mlm_labels=labels)
        out_r = red(ids, attn, mlm_labels=labels)
    torch.testing.assert_close(lr, lf[..., KEPT], rtol=0, atol=1e-6)
    # at masked positions only, the reduced logits are the kept columns of the full logits
    torch.testing.assert_close(out_r.logits, out_f.logits[:, KEPT], rtol=0, atol=1e-6)
    # and the reduced targets are the positions of the full labels in KEPT
    assert torch.equal(torch.tensor(KEPT)[out_r.mlm_targets], out_f.mlm_targets)
    # the reduced loss is a softmax over fewer classes, so it is strictly smaller
    assert out_r.loss < out_f.loss


@pytest.mark.parametrize("arch", ["xlmr", "bert"])
def test_head_initialised_from_checkpoint_lm_head(arch, xlmr_dir, bert_dir):
    d = xlmr_dir if arch == "xlmr" else bert_dir
    hf = (XLMRobertaForMaskedLM if arch == "xlmr" else BertForMaskedLM).from_pretrained(d).eval()
    model = KnowledgeAnchoredModel.from_pretrained(d).eval()
    assert model.meta["head_from_checkpoint"] is True
    ids, attn, _ = batch(3)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=attn).logits
        got = model.mlm_logits(ids, attn)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # the head is a copy, not tied to the input embeddings any more
    assert model.mlm_head.decoder.weight.data_ptr() != model.encoder.get_input_embeddings().weight.data_ptr()


def test_checkpoint_without_lm_head_uses_input_embeddings(tmp_path):
    torch.manual_seed(2)
    BertModel(bert_config()).save_pretrained(tmp_path)
    model = KnowledgeAnchoredModel.from_pretrained(tmp_path, kept_ids=KEPT)
    assert model.meta["head_from_checkpoint"] is False
    emb = model.encoder.get_input_embeddings().weight
    torch.testing.assert_close(model.mlm_head.decoder.weight, emb[KEPT])
    assert torch.count_nonzero(model.mlm_head.decoder.bias) == 0


def test_loss_only_at_masked_positions(xlmr_dir):
    model = KnowledgeAnchoredModel.from_pretrained(xlmr_dir, kept_ids=KEPT).eval()
    ids, attn, labels = kept_batch(5)
    # one label outside the kept set: ignored, reported
    col = (labels[0] != -100).nonzero()[0].item()
    labels[0, col] = 5  # odd id -> not kept
    with torch.no_grad():
        out = model(ids, attn, mlm_labels=labels)
        all_logits = model.mlm_logits(ids, attn)
    assert out.mlm_ignored == 1
    sel = (labels != -100) & (labels % 2 == 0)
    assert out.logits.shape == (int(sel.sum()), len(KEPT))
    targets = torch.tensor([KEPT.index(int(t)) for t in labels[sel]])
    expected = F.cross_entropy(all_logits[sel], targets)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    # no labels set -> no MLM loss at all
    out_none = model(ids, attn, mlm_labels=torch.full_like(labels, -100))
    assert out_none.losses == {} and out_none.mlm_count["mlm"] == 0
    assert float(out_none.loss.detach()) == 0.0
    out_none.loss.backward()  # still differentiable (zero gradients), e.g. for DDP


def test_per_task_losses_and_weights(xlmr_dir):
    model = KnowledgeAnchoredModel.from_pretrained(xlmr_dir).eval()
    ids, attn, labels = batch(7)
    task_ids = torch.tensor([TASK_IDS["mlm"], TASK_IDS["entity"], TASK_IDS["fact"], TASK_IDS["passage"]])
    with torch.no_grad():
        out = model(ids, attn, mlm_labels=labels, task_ids=task_ids)
        all_logits = model.mlm_logits(ids, attn)
    tok_loss = F.cross_entropy(all_logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    mask = labels != -100
    row_loss = [tok_loss[r][mask[r]] for r in range(4)]
    exp = {
        "mlm": torch.cat([row_loss[0], row_loss[3]]).mean(),  # passage rows' MLM counts under "mlm"
        "entity": row_loss[1].mean(),
        "fact": row_loss[2].mean(),
    }
    assert set(out.losses) == {"mlm", "entity", "fact"}
    for t, v in exp.items():
        torch.testing.assert_close(out.losses[t], v, rtol=1e-5, atol=1e-6)
    assert out.mlm_count == {
        "mlm": int(mask[0].sum() + mask[3].sum()),
        "entity": int(mask[1].sum()),
        "fact": int(mask[2].sum()),
        "passage": 0,
        "align": 0,
    }
    preds = all_logits.argmax(-1)
    assert out.mlm_correct["entity"] == int((preds[1][mask[1]] == labels[1][mask[1]]).sum())
    torch.testing.assert_close(out.loss, sum(exp.values()), rtol=1e-5, atol=1e-6)
    weighted = KnowledgeAnchoredModel.from_pretrained(xlmr_dir, loss_weights={"entity": 2.0, "fact": 0.5}).eval()
    with torch.no_grad():
        out_w = weighted(ids, attn, mlm_labels=labels, task_ids=task_ids)
    torch.testing.assert_close(out_w.loss, exp["mlm"] + 2.0 * exp["entity"] + 0.5 * exp["fact"], rtol=1e-5, atol=1e-6)


def test_pair_head_three_classes_and_only_labelled_rows(xlmr_dir):
    model = KnowledgeAnchoredModel.from_pretrained(xlmr_dir, loss_weights={"passage": 3.0}).eval()
    ids, attn, _ = batch(9)
    pair = torch.tensor([-100, PASSAGE_LABELS.index("random"), -100, PASSAGE_LABELS.index("context")])
    with torch.no_grad():
        out = model(ids, attn, pair_labels=pair, task_ids=torch.tensor([0, 3, 0, 3]))
    assert out.pair_logits.shape == (4, len(PASSAGE_LABELS)) == (4, 3)
    expected = F.cross_entropy(out.pair_logits[[1, 3]], pair[[1, 3]])
    torch.testing.assert_close(out.losses["passage"], expected)
    torch.testing.assert_close(out.loss, 3.0 * expected)
    assert out.pair_count == 2
    assert out.pair_correct == int((out.pair_logits[[1, 3]].argmax(-1) == pair[[1, 3]]).sum())
    # no labelled rows: no passage loss, zero-valued but differentiable total
    out2 = model(ids, attn, pair_labels=torch.full((4,), -100))
    assert "passage" not in out2.losses and out2.pair_count == 0 and float(out2.loss.detach()) == 0.0


def test_backward_reaches_heads_and_encoder(xlmr_dir):
    model = KnowledgeAnchoredModel.from_pretrained(xlmr_dir, kept_ids=KEPT)
    model.gradient_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.encoder.modules())
    model.train()
    ids, attn, labels = kept_batch(11)
    out = model(
        ids,
        attn,
        mlm_labels=labels,
        task_ids=torch.tensor([0, 1, 2, 3]),
        pair_labels=torch.tensor([-100, -100, -100, 0]),
    )
    out.loss.backward()
    for name in (
        "mlm_head.decoder.weight",
        "pair_head.out_proj.weight",
        "encoder.encoder.layer.0.attention.self.query.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_save_load_round_trip_exact(xlmr_dir, tmp_path):
    model = KnowledgeAnchoredModel.from_pretrained(xlmr_dir, kept_ids=KEPT, loss_weights={"fact": 2.0})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, attn, labels = kept_batch(13)
    pair = torch.tensor([0, -100, 2, -100])
    model(ids, attn, mlm_labels=labels, pair_labels=pair, task_ids=torch.tensor([3, 1, 3, 2])).loss.backward()
    opt.step()
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "kbioxlm_model.json"}
    meta = json.loads((tmp_path / "kbioxlm_model.json").read_text())
    assert meta["kept_ids"] == KEPT and meta["tasks"] == list(PRETRAIN_TASKS)
    loaded = KnowledgeAnchoredModel.load(tmp_path)
    assert loaded.kept_ids == KEPT and loaded.loss_weights == model.loss_weights
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    model.eval(), loaded.eval()
    with torch.no_grad():
        a = model(ids, attn, mlm_labels=labels, pair_labels=pair, task_ids=torch.tensor([3, 1, 3, 2]))
        b = loaded(ids, attn, mlm_labels=labels, pair_labels=pair, task_ids=torch.tensor([3, 1, 3, 2]))
    assert torch.equal(a.loss, b.loss) and a.mlm_count == b.mlm_count


def test_bert_from_config_with_token_type_ids():
    model = KnowledgeAnchoredModel.from_config(bert_config(), kept_ids=KEPT).eval()
    ids, attn, labels = kept_batch(17)
    out = model(ids, attn, mlm_labels=labels, token_type_ids=torch.zeros_like(ids))
    assert out.logits.shape[1] == len(KEPT) and torch.isfinite(out.loss)


def test_bad_arguments_are_reported(xlmr_dir, tmp_path):
    with pytest.raises(KbioxlmError, match="outside the model's vocabulary"):
        KnowledgeAnchoredModel.from_config(xlmr_config(), kept_ids=[0, V + 5])
    with pytest.raises(KbioxlmError, match="unknown loss weight"):
        KnowledgeAnchoredModel.from_config(xlmr_config(), loss_weights={"entities": 1.0})
    with pytest.raises(KbioxlmError, match="not a kbioxlm training checkpoint"):
        KnowledgeAnchoredModel.load(tmp_path)
    with pytest.raises(KbioxlmError, match="the path does not exist"):
        KnowledgeAnchoredModel.from_pretrained(tmp_path / "missing")


@pytest.mark.shared
def test_real_small_encoder_without_head(small_model_path):
    vocab_map = json.loads((small_model_path / "vocab_map.json").read_text())
    kept = list(range(0, 2000)) + [len(vocab_map) - 1]
    model = KnowledgeAnchoredModel.from_pretrained(small_model_path, kept_ids=kept)
    assert model.meta["head_from_checkpoint"] is False and model.vocab_map == vocab_map
    assert model.mlm_head.decoder.out_features == len(kept)
    ids = torch.tensor([[0, 100, 200, len(vocab_map) - 1, 2]])
    labels = torch.tensor([[-100, -100, -100, 150, -100]])
    out = model(ids, torch.ones_like(ids), mlm_labels=labels)
    assert out.mlm_count["mlm"] == 1 and torch.isfinite(out.loss)
