"""The recipe levers of continued pretraining and the `align` task, each by its behaviour.

Levers: per-unit 80/10/10, entity windows around switched spans, head warm-up with a frozen
encoder, frozen lower layers, separate head learning rate, mean-pooled pair head. `align`:
symmetric InfoNCE over mean-pooled names, trainable alone through `mix.align`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from kbioxlm.pretrain.collator import KnowledgeCollator  # noqa: E402
from kbioxlm.pretrain.trainer import load_pretrain_config, make_optimizer, train  # noqa: E402

from test_pretrain_train import DRUGS, corpus, load_final, read_jsonl, tiny_overrides  # noqa: E402,F401


@pytest.fixture(scope="module")
def tok(xlmr_tokenizer_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(xlmr_tokenizer_path))


# ------------------------------------------------------------------------------ masking
def _entity_record(text: str, names: list[str], switched: bool = True) -> dict:
    ents = []
    for n in names:
        s = text.index(n)
        ents.append({"start": s, "end": s + len(n), "concept": n, "lang": "en", "switched": switched})
    return {"id": "r", "lang": "en", "task": "entity", "text": text, "entities": ents}


@pytest.mark.parametrize("decision", ["unit", "token"])
def test_replacement_is_decided_per_unit(tok, decision):
    """With `unit`, a masked multi-piece entity is all <mask>, all random or all visible."""
    text = "patients with hypercholesterolemia and thrombocytopenia were given acetylsalicylic acid daily"
    rec = _entity_record(text, ["hypercholesterolemia", "thrombocytopenia", "acetylsalicylic acid"])
    coll = KnowledgeCollator(tok, max_length=64, mlm_probability=0.9, seed=3, mask_decision=decision)
    mixed = 0
    for _ in range(200):
        enc = coll.encode(rec)
        plain = tok(text)["input_ids"]
        labels = enc["mlm_labels"]
        # group masked positions into runs (each run is one entity here)
        runs: list[list[int]] = []
        for i, lab in enumerate(labels):
            if lab != -100:
                if runs and runs[-1][-1] == i - 1:
                    runs[-1].append(i)
                else:
                    runs.append([i])
        for run in runs:
            fates = {
                (
                    "mask"
                    if enc["input_ids"][i] == tok.mask_token_id
                    else "keep"
                    if enc["input_ids"][i] == plain[i]
                    else "rand"
                )
                for i in run
            }
            mixed += len(fates) > 1
    if decision == "unit":
        assert mixed == 0
    else:
        assert mixed > 0  # per-token draws leave parts of a masked entity visible


def test_entity_window_holds_the_switched_spans(tok):
    """An over-long entity record is cut where its switched spans are, not at its first match."""
    filler = " ".join(["the cohort was followed for several years"] * 12)
    text = f"aspirin was given. {filler} then 阿司匹林 and 二甲双胍 were compared"
    ents = [
        {"start": 0, "end": 7, "concept": "A", "lang": "en", "switched": False},
        {
            "start": text.index("阿司匹林"),
            "end": text.index("阿司匹林") + 4,
            "concept": "A",
            "lang": "zh",
            "switched": True,
        },
        {
            "start": text.index("二甲双胍"),
            "end": text.index("二甲双胍") + 4,
            "concept": "M",
            "lang": "zh",
            "switched": True,
        },
    ]
    rec = {"id": "w", "lang": "en", "task": "entity", "text": text, "entities": ents}
    assert len(tok(text)["input_ids"]) > 64

    def window_text(mode: str) -> str:
        coll = KnowledgeCollator(tok, max_length=64, seed=0, entity_window=mode)
        enc = coll.encode(rec)
        return tok.decode([i if lab == -100 else lab for i, lab in zip(enc["input_ids"], enc["mlm_labels"])])

    assert "阿司匹林" in window_text("switched") and "二甲双胍" in window_text("switched")
    assert "阿司匹林" not in window_text("first") and "aspirin" in window_text("first")


# ------------------------------------------------------------------------------ protecting the encoder
def _encoder_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def test_head_warmup_leaves_the_encoder_untouched(corpus, tmp_path):
    from kbioxlm.pretrain.model import KnowledgeAnchoredModel

    init = tmp_path / "init"
    train(load_pretrain_config(None, tiny_overrides(corpus, init, max_steps=1, eval_at_start=False)))
    out = tmp_path / "warm"
    train(
        load_pretrain_config(
            None,
            tiny_overrides(
                corpus,
                out,
                model=str(init / "final"),
                model_config="null",
                max_steps=6,
                freeze_encoder="true",
                head_learning_rate=0.05,
            ),
        )
    )
    before = KnowledgeAnchoredModel.load(init / "final").state_dict()
    after = load_final(out)
    for k, v in _encoder_state(before).items():
        assert torch.equal(v, after[k]), k
    assert not torch.equal(before["mlm_head.dense.weight"], after["mlm_head.dense.weight"])


def test_frozen_lower_layers_and_head_learning_rate(corpus, tmp_path):
    cfg = load_pretrain_config(
        None,
        tiny_overrides(
            corpus,
            tmp_path / "x",
            max_steps=4,
            freeze_layers=1,
            freeze_embeddings="true",
            model_config=json.dumps(
                {
                    "model_type": "xlm-roberta",
                    "hidden_size": 32,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 2,
                    "intermediate_size": 64,
                }
            ),
            learning_rate=0.01,
            head_learning_rate=0.1,
        ),
    )
    from kbioxlm.hub import load_tokenizer
    from kbioxlm.pretrain.trainer import build_model, kept_ids_of

    tokenizer = load_tokenizer(cfg.tokenizer)
    model = build_model(cfg, tokenizer, kept_ids_of(cfg, len(tokenizer)))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoder.embeddings.") for n in frozen)
    assert any(n.startswith("encoder.encoder.layer.0.") for n in frozen)
    assert not any(n.startswith("encoder.encoder.layer.1.") for n in frozen)
    opt = make_optimizer(model, cfg, "cpu")
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lrs[id(named["mlm_head.dense.weight"])] == pytest.approx(0.1)
    assert lrs[id(named["encoder.encoder.layer.1.attention.self.query.weight"])] == pytest.approx(0.01)
    assert id(named["encoder.encoder.layer.0.attention.self.query.weight"]) not in lrs
    # and a run keeps them: layer 0 unchanged, layer 1 trained
    train(cfg)
    from accelerate.utils import set_seed

    set_seed(int(cfg.seed))
    init_model = build_model(cfg, tokenizer, kept_ids_of(cfg, len(tokenizer)))  # same seed -> same init
    after = load_final(tmp_path / "x")
    k0, k1 = (
        "encoder.encoder.layer.0.attention.self.query.weight",
        "encoder.encoder.layer.1.attention.self.query.weight",
    )
    init_state = init_model.state_dict()
    assert torch.equal(init_state[k0], after[k0])
    assert not torch.equal(init_state[k1], after[k1])


def test_mean_pooled_pair_head_reads_every_token(corpus, tmp_path):
    from kbioxlm.hub import load_tokenizer
    from kbioxlm.pretrain.trainer import build_model, kept_ids_of

    cfg = load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "p", pair_pooling="mean"))
    tokenizer = load_tokenizer(cfg.tokenizer)
    model = build_model(cfg, tokenizer, kept_ids_of(cfg, len(tokenizer))).eval()
    ids = torch.tensor([[0, 100, 200, 300, 2], [0, 100, 200, 301, 2]])
    with torch.no_grad():
        mean_out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).pair_logits
        model.set_options(pair_pooling="cls")
        cls_out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).pair_logits
    assert not torch.allclose(mean_out[0], mean_out[1])
    # the first token's state also changes with the rest (attention), but mean pooling reads token 3 directly
    assert (mean_out[0] - mean_out[1]).abs().sum() > 0 and cls_out.shape == mean_out.shape


# ------------------------------------------------------------------------------ align
def test_align_loss_is_symmetric_and_rewards_matching_pairs():
    from kbioxlm.pretrain.model import KnowledgeAnchoredModel
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(
        "bert", vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = KnowledgeAnchoredModel.from_config(cfg)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    l_ab, c_ab = model.align_loss(a, b)
    l_ba, c_ba = model.align_loss(b, a)
    torch.testing.assert_close(l_ab, l_ba)
    assert c_ab == c_ba
    l_same, c_same = model.align_loss(a, a)
    assert l_same < l_ab and c_same == 12


def _align_records(path: Path, n: int = 16) -> Path:
    words = [
        "aspirin",
        "metformin",
        "ibuprofen",
        "paracetamol",
        "insulin",
        "heparin",
        "warfarin",
        "codeine",
        "morphine",
        "atropine",
        "digoxin",
        "lithium",
        "quinine",
        "caffeine",
        "nicotine",
        "penicillin",
    ]
    zh = [
        "阿司匹林",
        "二甲双胍",
        "布洛芬",
        "对乙酰氨基酚",
        "胰岛素",
        "肝素",
        "华法林",
        "可待因",
        "吗啡",
        "阿托品",
        "地高辛",
        "锂",
        "奎宁",
        "咖啡因",
        "尼古丁",
        "青霉素",
    ]
    recs = [
        {"id": f"C{i}", "task": "align", "concept": f"C{i}", "names": {"en": [w], "zh": [zh[i]]}}
        for i, w in enumerate(words[:n])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_align_alone_trains_to_near_zero_loss(corpus, tmp_path):
    """`mix.align` alone: no other record type needed; a fixed set of name pairs is learnt (loss from
    about ln(16) at chance to near zero)."""
    recs = _align_records(tmp_path / "align.jsonl")
    out = tmp_path / "align-run"
    cfg = load_pretrain_config(
        None,
        tiny_overrides(
            corpus,
            out,
            train_files=str(recs),
            eval_files=str(recs),
            max_steps=60,
            per_device_train_batch_size=16,
            learning_rate=0.01,
            warmup_steps=0,
            eval_steps=60,
            logging_steps=1,
            **{"mix": json.dumps({"align": 1.0})},
        ),
    )
    metrics = train(cfg)
    log = read_jsonl(out / "train_log.jsonl")
    assert all(set(r) >= {"loss_align"} for r in log)
    assert log[-1]["loss_align"] < 0.05 and log[0]["loss_align"] > 1.0  # ln(16) = 2.8 at chance
    assert metrics["align_acc"] == pytest.approx(1.0)


def test_align_collation_pairs_languages(tok):
    coll = KnowledgeCollator(tok, seed=0)
    recs = [
        {
            "id": "1",
            "task": "align",
            "concept": "1",
            "names": {"zh": ["阿司匹林"], "en": ["aspirin", "acetylsalicylic acid"]},
        },
        {"id": "2", "task": "align", "concept": "2", "names": {"en": ["metformin"], "zh": ["二甲双胍"]}},
    ]
    batch = coll(recs)
    assert set(batch) == {
        "align_a_ids",
        "align_a_attention",
        "align_a_mask",
        "align_b_ids",
        "align_b_attention",
        "align_b_mask",
    }
    a = [tok.decode(r[m.bool()]) for r, m in zip(batch["align_a_ids"], batch["align_a_mask"])]
    b = [tok.decode(r[m.bool()]) for r, m in zip(batch["align_b_ids"], batch["align_b_mask"])]
    assert a[0] in ("aspirin", "acetylsalicylic acid") and b[0] == "阿司匹林"  # languages in sorted order: en, zh
    assert a[1] == "metformin" and b[1] == "二甲双胍"
    # mixed with other records: both parts in one batch
    mixed = coll([*recs, {"id": "d", "lang": "en", "text": "aspirin helps"}])
    assert mixed["input_ids"].shape[0] == 1 and mixed["align_a_ids"].shape[0] == 2
