"""vocab reduce (counting, kept ids, CLI) and vocab trim (exact tokenization on real EN+ZH text)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from kbioxlm.errors import KbioxlmError
from kbioxlm.cli import main
from kbioxlm.pretrain.vocab import (
    count_token_frequencies,
    load_kept_ids,
    plan_trim,
    select_kept_ids,
    trim_tokenizer_json,
)

from conftest import shared_path


def run_cli(*argv: str) -> int:
    """Run a sub-command through the real ``kbioxlm`` entry point (one-line errors → exit 2)."""
    return main(list(argv))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def xlmr_tok(xlmr_tokenizer_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(xlmr_tokenizer_path))


def real_texts(n_en: int, n_zh: int, offset: int = 0) -> list[str]:
    en = shared_path("data", "parallel", "paramed", "nejm.dev.en").read_text(encoding="utf-8").splitlines()
    zh = json.loads(shared_path("data", "corpora", "zh", "cmeee_dev.json").read_text(encoding="utf-8"))
    return en[offset : offset + n_en] + [r["text"] for r in zh[offset : offset + n_zh]]


def test_count_token_frequencies_matches_direct_tokenization(tmp_path, xlmr_tok):
    texts = real_texts(40, 40)
    docs = write_jsonl(
        tmp_path / "docs.jsonl", [{"id": str(i), "lang": "x", "text": t} for i, t in enumerate(texts[:60])]
    )
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {
                "id": "p",
                "task": "passage",
                "text_a": texts[60],
                "lang_a": "en",
                "text_b": texts[70],
                "lang_b": "zh",
                "label": "positive",
            }
        ],
    )
    counts = count_token_frequencies(xlmr_tok, [docs, pairs], batch_size=7, progress=False)
    expected = Counter(
        i for t in texts[:60] + [texts[60], texts[70]] for i in xlmr_tok(t, add_special_tokens=False)["input_ids"]
    )
    assert counts == expected


def test_count_reports_bad_record_with_file_and_line(tmp_path, xlmr_tok):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"id": 1}\n', encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"bad.jsonl:2: no text field"):
        count_token_frequencies(xlmr_tok, [bad], progress=False)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n\n{"text": \n', encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"broken.jsonl:3: malformed JSON"):
        count_token_frequencies(xlmr_tok, [broken], progress=False)


def test_select_kept_ids(xlmr_tok):
    counts = Counter({10: 5, 11: 1, 12: 3, 13: 3, 250001: 2})
    specials = set(xlmr_tok.all_special_ids)
    kept = select_kept_ids(counts, xlmr_tok)
    assert kept == sorted(specials | {10, 11, 12, 13})
    assert select_kept_ids(counts, xlmr_tok, min_count=3) == sorted(specials | {10, 12, 13})
    # max_size keeps the most frequent; ties broken by id so the list is deterministic
    assert select_kept_ids(counts, xlmr_tok, max_size=len(specials) + 2) == sorted(specials | {10, 12})
    padded = select_kept_ids(counts, xlmr_tok, min_size=500)
    assert len(padded) == 500 and set(kept) <= set(padded)
    with pytest.raises(KbioxlmError):
        select_kept_ids(counts, xlmr_tok, max_size=2)


def test_vocab_reduce_cli_writes_json_atomically(tmp_path, xlmr_tok, xlmr_tokenizer_path):
    texts = real_texts(20, 20)
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": str(i), "lang": "x", "text": t} for i, t in enumerate(texts)])
    out = tmp_path / "kept.json"
    assert (
        run_cli(
            "vocab",
            "reduce",
            "--tokenizer",
            str(xlmr_tokenizer_path),
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--min-count",
            "2",
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["tokenizer"] == str(xlmr_tokenizer_path) and doc["vocab_size"] == 250002
    counts = Counter(i for t in texts for i in xlmr_tok(t, add_special_tokens=False)["input_ids"])
    assert doc["kept_ids"] == sorted(set(xlmr_tok.all_special_ids) | {i for i, c in counts.items() if c >= 2})
    assert {int(k): v for k, v in doc["counts"].items()} == dict(counts)
    assert load_kept_ids(out, vocab_size=250002) == doc["kept_ids"]
    # bad input: non-zero exit, no output file (malformed records: test_count_reports_bad_record...)
    out2 = tmp_path / "kept2.json"
    assert (
        run_cli(
            "vocab",
            "reduce",
            "--tokenizer",
            str(xlmr_tokenizer_path),
            "--corpus",
            str(corpus),
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(out2),
        )
        == 2
    )
    assert not out2.exists() and not list(tmp_path.glob(".kept2.json*"))
    with pytest.raises(KbioxlmError, match="vocab_size|counted with"):
        load_kept_ids(out, vocab_size=1000)


def test_plan_trim_keeps_closure_and_lowest_piece():
    pieces = [
        ["<s>", 0.0],
        ["<pad>", 0.0],
        ["</s>", 0.0],
        ["<unk>", 0.0],
        ["\u2581ab", -1.0],
        ["a", -2.0],
        ["b", -2.5],
        ["ba", -3.0],
        ["\u2581c", -3.5],
        ["\u00e9", -4.0],
        ["\u0416", -9.0],
        ["<mask>", 0.0],
    ]
    tj = {
        "model": {"type": "Unigram", "unk_id": 3, "vocab": pieces},
        "added_tokens": [
            {"id": i, "content": p} for i, p in [(0, "<s>"), (1, "<pad>"), (2, "</s>"), (3, "<unk>"), (11, "<mask>")]
        ],
        "post_processor": {"type": "TemplateProcessing", "special_tokens": {"<s>": {"ids": [0]}, "</s>": {"ids": [2]}}},
    }
    # only "▁ab" kept: closure adds a, b, ba (same characters); the lowest piece Ж keeps the unk penalty
    keep = plan_trim(tj, [4], charsets=())
    assert keep == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
    # latin1 covers c and é
    assert plan_trim(tj, [4], charsets=("latin1",)) == list(range(12))
    trimmed = trim_tokenizer_json(tj, keep)
    assert [p for p, _ in trimmed["model"]["vocab"]][-2:] == ["\u0416", "<mask>"]
    assert trimmed["added_tokens"][-1]["id"] == len(keep) - 1
    with pytest.raises(KbioxlmError, match="unknown charset"):
        plan_trim(tj, [4], charsets=("klingon",))


@pytest.mark.shared
def test_vocab_trim_tokenizes_real_text_identically(tmp_path, xlmr_tok, xlmr_tokenizer_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=260,
        type_vocab_size=1,
    )
    full = XLMRobertaForMaskedLM(cfg)
    with torch.no_grad():
        full.lm_head.bias.normal_()
    full.save_pretrained(tmp_path / "full")
    # count on one part of the real text ...
    corpus = write_jsonl(
        tmp_path / "c.jsonl", [{"id": str(i), "lang": "x", "text": t} for i, t in enumerate(real_texts(500, 1500))]
    )
    kept_file = tmp_path / "kept.json"
    assert (
        run_cli(
            "vocab", "reduce", "--tokenizer", str(xlmr_tokenizer_path), "--corpus", str(corpus), "--out", str(kept_file)
        )
        == 0
    )
    out = tmp_path / "trimmed"
    assert (
        run_cli(
            "vocab",
            "trim",
            "--model",
            str(tmp_path / "full"),
            "--tokenizer",
            str(xlmr_tokenizer_path),
            "--kept",
            str(kept_file),
            "--out",
            str(out),
        )
        == 0
    )
    vocab_map = json.loads((out / "vocab_map.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == len(vocab_map) < 130_000 and vocab_map == sorted(vocab_map)
    assert set(load_kept_ids(kept_file)) <= set(vocab_map)
    assert vocab_map[tok.mask_token_id] == xlmr_tok.mask_token_id and tok.pad_token_id == 1
    # ... and tokenize held-out EN and ZH text (other files) with both tokenizers
    held_out = (
        shared_path("data", "parallel", "paramed", "nejm.test.en").read_text(encoding="utf-8").splitlines()[:800]
        + shared_path("data", "parallel", "paramed", "nejm.test.zh").read_text(encoding="utf-8").splitlines()[:800]
        + shared_path("data", "corpora", "zh", "medical_dialogue_internal_medicine.txt")
        .read_text(encoding="utf-8")
        .split("\n")[:1500]
        + ["α-突触核蛋白 and β2-microglobulin: 5 µg/kg ≥ 10%，<mask> 治疗。"]
    )
    a = xlmr_tok(held_out)["input_ids"]
    b = tok(held_out)["input_ids"]
    mismatches = [t for t, x, y in zip(held_out, a, b) if [vocab_map[i] for i in y] != x]
    assert mismatches == []
    # the trimmed model computes the same logits on the mapped ids
    trimmed_model = AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    full.eval()
    enc_a = xlmr_tok(held_out[:3] + held_out[-2:], padding=True, truncation=True, max_length=64, return_tensors="pt")
    enc_b = tok(held_out[:3] + held_out[-2:], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        la = full(**enc_a).logits
        lb = trimmed_model(**enc_b).logits
    torch.testing.assert_close(lb, la[..., vocab_map], rtol=0, atol=1e-6)
    # bad kept file: clear error, nothing written
    (tmp_path / "bad.json").write_text('{"kept_ids": [1, "x"]}', encoding="utf-8")
    assert (
        run_cli(
            "vocab",
            "trim",
            "--model",
            str(tmp_path / "full"),
            "--tokenizer",
            str(xlmr_tokenizer_path),
            "--kept",
            str(tmp_path / "bad.json"),
            "--out",
            str(tmp_path / "t2"),
        )
        == 2
    )
    assert not (tmp_path / "t2").exists()
