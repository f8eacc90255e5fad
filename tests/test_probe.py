"""``kbioxlm probe``: the retrieval core, the CLI end to end on a tiny random BERT (real XLM-R
tokenizer) and tiny KBs, and the real e5 model on HPO + ParaMed (shared, skipped if absent)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from kbioxlm.cli import main
from kbioxlm.probe import retrieval_scores, run_probe
from kbioxlm.probe.retrieval import permuted_sample

ADJ = ["acute", "chronic", "severe", "mild", "congenital", "recurrent", "bilateral", "progressive", "focal", "diffuse"]
NOUN = ["fever", "cough", "anemia", "asthma", "arthritis"]
NAMES = [f"{a} {n}" for a in ADJ for n in NOUN]  # 50 distinct names
ZH_ADJ = ["急性", "慢性", "严重", "轻度", "先天性", "复发性", "双侧", "进行性", "局灶性", "弥漫性"]
ZH_NOUN = ["发热", "咳嗽", "贫血", "哮喘", "关节炎"]
ZH_NAMES = [f"{a}{n}" for a in ZH_ADJ for n in ZH_NOUN]
N_LAYERS = 2


# ---- the retrieval core --------------------------------------------------------------------------
def test_retrieval_scores_identity_random_shuffled_and_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    assert retrieval_scores(x, x) == pytest.approx({"acc1": 100.0, "mrr": 100.0})
    # cosine, not dot product: scaling rows changes nothing
    assert retrieval_scores(x, x * rng.uniform(0.1, 10.0, size=(200, 1))) == pytest.approx(
        {"acc1": 100.0, "mrr": 100.0}
    )
    rand = retrieval_scores(x, rng.normal(size=(200, 16)))
    assert rand["acc1"] < 10 and rand["mrr"] < 20
    shuffled = retrieval_scores(x, x[rng.permutation(200)])
    assert shuffled["acc1"] < 10 and shuffled["mrr"] < 20
    # hand example: both wrong at rank 2
    assert retrieval_scores([[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]) == pytest.approx(
        {"acc1": 0.0, "mrr": 50.0}
    )
    # a degenerate encoder (all vectors equal) scores chance in expectation, not 100
    flat = np.ones((200, 8))
    harmonic = sum(1.0 / r for r in range(1, 201))
    assert retrieval_scores(flat, flat) == pytest.approx({"acc1": 100.0 / 200, "mrr": 100.0 * harmonic / 200})
    # one tie among two candidates at the top: half a hit
    assert retrieval_scores([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]])["acc1"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="same shape"):
        retrieval_scores(x, x[:10])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_scores(np.full((3, 2), np.nan), np.ones((3, 2)))


def test_sample_indices_deterministic() -> None:
    a = permuted_sample(1000, 10, seed=0)
    assert a == permuted_sample(1000, 10, seed=0) and a == sorted(a) and len(set(a)) == 10
    assert a != permuted_sample(1000, 10, seed=1)
    assert permuted_sample(5, 10, seed=0) == [0, 1, 2, 3, 4]


# ---- tiny model and KBs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, xlmr_tokenizer_path: Path) -> str:
    import torch
    from transformers import BertConfig, BertModel

    from kbioxlm.hub import load_tokenizer

    tok = load_tokenizer(str(xlmr_tokenizer_path))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=N_LAYERS, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)  # fmt: skip
    out = tmp_path_factory.mktemp("tiny-bert")
    BertModel(cfg).save_pretrained(out)
    return str(out)


def test_embed_layers_mean_pools_content_pieces_per_layer(tiny_model: str, xlmr_tokenizer_path: Path) -> None:
    import torch

    from kbioxlm.probe import embed_layers, load_encoder

    encoder, tok = load_encoder(tiny_model, xlmr_tokenizer_path)
    texts = ["acute fever", "先天性关节炎伴随多种复杂的并发症和长期的慢性疼痛", "cough"]
    got = embed_layers(encoder, tok, texts, batch_size=2)  # batches mix lengths: padding must not leak in
    assert got.shape == (N_LAYERS + 1, 3, 32)
    for i, text in enumerate(texts):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**enc, output_hidden_states=True).hidden_states
        for layer in range(N_LAYERS + 1):
            want = hidden[layer][0, 1:-1].mean(0)  # <s> and </s> left out
            assert torch.allclose(got[layer, i], want, atol=1e-5), (text, layer)
    assert not torch.allclose(got[0], got[-1])  # layer 0 is the embedding output, not the last layer


def _kb(tmp_path: Path, name: str, zh: list[str | None]) -> Path:
    rows = ["id\ttype\tlang\tname\tpreferred"]
    for i, en in enumerate(NAMES):
        rows.append(f"C{i:03d}\tDisease\ten\t{en}\t1")
        if zh[i] is not None:
            rows.append(f"C{i:03d}\tDisease\tzh\t{zh[i]}\t1")
    tsv = tmp_path / f"{name}.tsv"
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    kb = tmp_path / f"{name}.sqlite"
    assert main(["kb", "import", "tsv", "--concepts", str(tsv), "--kb", str(kb)]) == 0
    return kb


def _probe(tiny_model: str, tok: Path, kb: Path, out: Path, *extra: str) -> int:
    return main(["probe", "--model", tiny_model, "--tokenizer", str(tok), "--kb", str(kb), "--source-lang", "en",
                 "--target-lang", "zh", "--out", str(out), *extra])  # fmt: skip


def _check_section(sec: dict, n: int) -> None:
    assert sec["n"] == n
    assert set(sec["en_zh"]) == {"acc1", "mrr"} and set(sec["zh_en"]) == {"acc1", "mrr"}
    assert sec["layer"] == N_LAYERS
    assert [r["layer"] for r in sec["per_layer"]] == list(range(N_LAYERS + 1))
    assert sec["en_zh"] == sec["per_layer"][-1]["en_zh"] and sec["zh_en"] == sec["per_layer"][-1]["zh_en"]
    for d in ("en_zh", "zh_en"):
        best = sec["best_layer"][d]
        assert best["acc1"] == max(r[d]["acc1"] for r in sec["per_layer"])
        assert sec["per_layer"][best["layer"]][d]["acc1"] == best["acc1"]


def test_identical_names_retrieve_perfectly(tmp_path: Path, tiny_model: str, xlmr_tokenizer_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    kb = _kb(tmp_path, "same", list(NAMES))
    src, tgt = tmp_path / "s.en", tmp_path / "s.zh"
    src.write_text("\n".join(NAMES[:20]) + "\n\n", encoding="utf-8")  # a blank pair is skipped
    tgt.write_text("\n".join(NAMES[:20]) + "\nnot blank\n", encoding="utf-8")
    capsys.readouterr()
    out = tmp_path / "out"
    assert _probe(tiny_model, xlmr_tokenizer_path, kb, out, "--parallel", str(src), str(tgt)) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("\n") == 1 and stdout.startswith(
        "probe: terms n=50 en→zh acc1=100.0 mrr=100.0 zh→en acc1=100.0"
    )
    assert "| sentences n=20 en→zh acc1=100.0 zh→en acc1=100.0 |" in stdout
    res = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert list(res) == ["term_retrieval", "sentence_retrieval", "model", "source_lang", "target_lang", "seconds"]
    assert (res["model"], res["source_lang"], res["target_lang"]) == (tiny_model, "en", "zh")
    assert res["seconds"] >= 0
    for key, n in (("term_retrieval", 50), ("sentence_retrieval", 20)):
        _check_section(res[key], n)
        for row in res[key]["per_layer"]:
            assert row["en_zh"] == {"acc1": 100.0, "mrr": 100.0} and row["zh_en"] == {"acc1": 100.0, "mrr": 100.0}
    assert res["term_retrieval"]["n_skipped"] == 0 and res["sentence_retrieval"]["n_available"] == 20


def test_deranged_names_score_chance(tmp_path: Path, tiny_model: str, xlmr_tokenizer_path: Path) -> None:
    n = len(NAMES)
    perm = [(i + 7) % n for i in range(n)]  # a derangement: no concept keeps its own name
    kb = _kb(tmp_path, "deranged", [NAMES[perm[i]] for i in range(n)])
    out = tmp_path / "out"
    assert _probe(tiny_model, xlmr_tokenizer_path, kb, out) == 0
    res = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert res["sentence_retrieval"] is None
    _check_section(res["term_retrieval"], n)
    bound = 3 * 100.0 / n  # three times chance
    for row in res["term_retrieval"]["per_layer"]:
        assert row["en_zh"]["acc1"] <= bound and row["zh_en"]["acc1"] <= bound, row


def test_concept_list_sampling_and_checkpoint(tmp_path: Path, tiny_model: str, xlmr_tokenizer_path: Path) -> None:
    zh: list[str | None] = list(ZH_NAMES)
    zh[3] = None  # C003 has no Chinese name
    kb = _kb(tmp_path, "zh", zh)
    ids = tmp_path / "ids.txt"
    ids.write_text("# probe set\nC000\n\nC003  # no zh name: skipped\n" + "".join(f"C{i:03d}\n" for i in range(4, 30)) + "C004\n",
                   encoding="utf-8")  # fmt: skip
    res = run_probe(tiny_model, kb, "en", "zh", concepts=ids, tokenizer=xlmr_tokenizer_path)
    assert res["term_retrieval"]["n"] == 27 and res["term_retrieval"]["n_skipped"] == 1
    # --max-terms: a seeded sample of the 49 bilingual concepts, reproducible
    a = run_probe(tiny_model, kb, "en", "zh", max_terms=10, seed=3, tokenizer=xlmr_tokenizer_path)
    b = run_probe(tiny_model, kb, "en", "zh", max_terms=10, seed=3, tokenizer=xlmr_tokenizer_path)
    assert a["term_retrieval"]["n"] == 10 and a["term_retrieval"]["n_available"] == 49
    assert a["term_retrieval"]["per_layer"] == b["term_retrieval"]["per_layer"]
    # the digest names the questions: same sample, same digest; another sample, another digest
    assert a["term_retrieval"]["items_sha256"] == b["term_retrieval"]["items_sha256"]
    c = run_probe(tiny_model, kb, "en", "zh", max_terms=10, seed=4, tokenizer=xlmr_tokenizer_path)
    assert c["term_retrieval"]["items_sha256"] != a["term_retrieval"]["items_sha256"]
    # a kbioxlm training checkpoint is probed through its encoder: same numbers as the encoder itself
    from kbioxlm.pretrain.model import KnowledgeAnchoredModel

    ckpt = tmp_path / "ckpt"
    KnowledgeAnchoredModel.from_pretrained(tiny_model, kept_ids=list(range(16))).save_pretrained(ckpt)
    full = run_probe(tiny_model, kb, "en", "zh", tokenizer=xlmr_tokenizer_path)
    via_ckpt = run_probe(ckpt, kb, "en", "zh", tokenizer=xlmr_tokenizer_path, out_dir=tmp_path / "o")
    assert via_ckpt["term_retrieval"]["per_layer"] == full["term_retrieval"]["per_layer"]
    assert json.loads((tmp_path / "o" / "probe.json").read_text(encoding="utf-8"))["term_retrieval"]["n"] == 49


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, tiny_model: str, xlmr_tokenizer_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    kb = _kb(tmp_path, "same", list(NAMES))
    out = tmp_path / "out"

    def err_of(*extra: str) -> str:
        capsys.readouterr()
        assert _probe(tiny_model, xlmr_tokenizer_path, kb, out, *extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err

    ids = tmp_path / "ids.txt"
    ids.write_text("C000\n# comment\n\nNOPE:1\n", encoding="utf-8")
    assert f"{ids}:4: unknown concept id 'NOPE:1'" in err_of("--concepts", str(ids))
    a, b = tmp_path / "a.en", tmp_path / "b.zh"
    a.write_text("one\ntwo\nthree\n", encoding="utf-8")
    b.write_text("一\n二\n", encoding="utf-8")
    err = err_of("--parallel", str(a), str(b))
    assert str(a) in err and str(b) in err and "same number of lines" in err
    b.write_bytes("一\n二\n".encode() + b"\xff\xfe\n")
    assert f"{b}:3: not valid UTF-8" in err_of("--parallel", str(a), str(b))
    j = tmp_path / "p.jsonl"
    j.write_text('{"en": "one", "zh": "一"}\n{"en": "two"}\n', encoding="utf-8")
    assert f"{j}:2: missing key 'zh'" in err_of("--parallel-jsonl", str(j))
    assert "no names in language 'de'" in err_of("--target-lang", "de")
    assert not (out / "probe.json").exists()


def test_parallel_jsonl(tmp_path: Path, tiny_model: str, xlmr_tokenizer_path: Path) -> None:
    kb = _kb(tmp_path, "zh", list(ZH_NAMES))
    j = tmp_path / "p.jsonl"
    rows = [{"en": s, "zh": s} for s in NAMES[:12]] + [{"en": "  ", "zh": "空"}]
    j.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    res = run_probe(tiny_model, kb, "en", "zh", parallel=str(j), max_sentences=8, tokenizer=xlmr_tokenizer_path)
    sec = res["sentence_retrieval"]
    assert sec["n"] == 8 and sec["n_available"] == 12 and len(sec["items_sha256"]) == 64
    assert sec["en_zh"] == {"acc1": 100.0, "mrr": 100.0} and sec["zh_en"] == {"acc1": 100.0, "mrr": 100.0}
    # in-memory pairs for other stages
    res2 = run_probe(tiny_model, None, "en", "zh", parallel=[(s, s) for s in NAMES[:5]], tokenizer=xlmr_tokenizer_path)
    assert res2["term_retrieval"] is None and res2["sentence_retrieval"]["n"] == 5


# ---- real model and data -------------------------------------------------------------------------
@pytest.mark.shared
def test_real_e5_on_hpo_and_paramed(tmp_path: Path, small_model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obo = shared_path("data", "kb", "hpo", "hp.obo")
    zh = shared_path("data", "kb", "hpo", "hp-zh.babelon.tsv")
    en_file = shared_path("data", "parallel", "paramed", "nejm.dev.en")
    zh_file = shared_path("data", "parallel", "paramed", "nejm.dev.zh")
    from kbioxlm.kb.obo import import_obo

    kb = tmp_path / "hpo.sqlite"
    import_obo(kb, obo, translations=[zh])
    src, tgt = tmp_path / "dev.en", tmp_path / "dev.zh"
    for path, out in ((en_file, src), (zh_file, tgt)):
        with open(path, encoding="utf-8") as fh:
            out.write_text("".join(next(fh) for _ in range(50)), encoding="utf-8")
    out = tmp_path / "probe"
    capsys.readouterr()
    assert main(["probe", "--model", str(small_model_path), "--kb", str(kb), "--source-lang", "en", "--target-lang", "zh",
                 "--max-terms", "200", "--parallel", str(src), str(tgt), "--out", str(out)]) == 0  # fmt: skip
    stdout = capsys.readouterr().out
    assert "LOAD REPORT" not in stdout and stdout.startswith("probe: terms n=200 ")
    res = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    terms, sents = res["term_retrieval"], res["sentence_retrieval"]
    assert terms["n"] == 200 and terms["n_available"] >= 18_000 and sents["n"] == 50
    assert len(terms["per_layer"]) == 13 and terms["layer"] == 12
    chance = 100.0 / 200
    for d in ("en_zh", "zh_en"):
        assert terms[d]["acc1"] > 10 and terms[d]["acc1"] > 10 * chance, terms[d]
        assert sents[d]["acc1"] > 50, sents[d]
        assert math.isclose(terms[d]["acc1"], terms["per_layer"][-1][d]["acc1"])
