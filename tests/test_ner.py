"""NER internals: BIO-constrained CRF, text tokenisation of character-per-line Chinese, chunking."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kbioxlm.schema import is_unspaced
from kbioxlm.tasks.ner import (
    IMPOSSIBLE,
    ConstrainedCRF,
    EncoderCRFTagger,
    NEREncoding,
    build_label_list,
    collate_ner,
    decode_words,
    encode_ner,
    is_valid_iob2,
    repair_iob2,
)

LABELS = build_label_list({"ADE", "Drug"})  # O, B-ADE, I-ADE, B-Drug, I-Drug
L2I = {t: i for i, t in enumerate(LABELS)}


@pytest.fixture(scope="module")
def tok(xlmr_tokenizer_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(xlmr_tokenizer_path)


def test_label_list_and_repair() -> None:
    assert LABELS == ["O", "B-ADE", "I-ADE", "B-Drug", "I-Drug"]
    assert repair_iob2(["I-ADE", "I-ADE", "B-Drug", "I-ADE", "O", "I-Drug"]) == [
        "B-ADE",
        "I-ADE",
        "B-Drug",
        "B-ADE",
        "O",
        "B-Drug",
    ]
    assert is_valid_iob2(["B-ADE", "I-ADE", "O"]) and not is_valid_iob2(["B-Drug", "I-ADE"])
    assert not is_valid_iob2(["I-ADE"]) and not is_valid_iob2(["O", "I-Drug"])


def test_crf_decoding_never_illegal() -> None:
    torch.manual_seed(0)
    crf = ConstrainedCRF(LABELS)
    em = torch.randn(64, 12, len(LABELS)) * 20
    em[:8, :, L2I["I-ADE"]] += 200.0  # emissions that scream I-ADE everywhere, even at the start
    mask = torch.ones(64, 12, dtype=torch.bool)
    for i in range(64):
        mask[i, 1 + i % 12 :] = False
    paths = crf.decode(em, mask=mask)
    assert [len(p) for p in paths] == [1 + i % 12 for i in range(64)]
    for p in paths:
        assert is_valid_iob2([LABELS[j] for j in p])
    assert LABELS[paths[7][0]] == "B-ADE" and all(LABELS[j] == "I-ADE" for j in paths[7][1:])
    # the emissions alone would start with I-ADE: the constraint did the work
    assert em[7, 0].argmax().item() == L2I["I-ADE"]


def test_vectorised_viterbi_matches_torchcrf() -> None:
    torch.manual_seed(1)
    crf = ConstrainedCRF(LABELS)
    with torch.no_grad():  # random legal transitions so the paths are not trivial
        crf.transitions.add_(torch.randn_like(crf.transitions))
        crf.start_transitions.add_(torch.randn(len(LABELS)))
        crf.end_transitions.add_(torch.randn(len(LABELS)))
        crf.enforce()
    em = torch.randn(40, 9, len(LABELS)) * 3
    mask = torch.ones(40, 9, dtype=torch.bool)
    for i in range(40):
        mask[i, 1 + (i * 7) % 9 :] = False
    assert crf.decode(em, mask=mask) == crf.decode_reference(em, mask=mask)
    assert crf.decode(em) == crf.decode_reference(em)


def test_crf_constraints_stay_pinned_through_training() -> None:
    torch.manual_seed(0)
    crf = ConstrainedCRF(LABELS)
    opt = torch.optim.AdamW(crf.parameters(), lr=0.5, weight_decay=0.5)
    em = torch.randn(4, 6, len(LABELS), requires_grad=True)
    gold = torch.tensor(
        [
            [L2I[t] for t in s]
            for s in (
                ["B-ADE", "I-ADE", "O", "B-Drug", "I-Drug", "O"],
                ["O", "O", "B-Drug", "O", "B-ADE", "I-ADE"],
                ["B-Drug", "B-ADE", "I-ADE", "I-ADE", "O", "O"],
                ["O", "O", "O", "O", "O", "B-ADE"],
            )
        ]
    )
    for _ in range(5):
        loss = -crf(em, gold, mask=torch.ones(4, 6, dtype=torch.bool))
        loss.backward()
        assert crf.transitions.grad[crf.trans_mask].abs().max() == 0  # hook zeroed illegal entries
        assert crf.start_transitions.grad[crf.start_mask].abs().max() == 0
        opt.step()
        opt.zero_grad()
        crf.enforce()
    assert torch.all(crf.transitions[crf.trans_mask] == IMPOSSIBLE)
    assert torch.all(crf.start_transitions[crf.start_mask] == IMPOSSIBLE)
    assert crf.trans_mask[L2I["O"], L2I["I-ADE"]] and crf.trans_mask[L2I["B-Drug"], L2I["I-ADE"]]
    assert not crf.trans_mask[L2I["B-ADE"], L2I["I-ADE"]] and not crf.trans_mask[L2I["I-Drug"], L2I["B-ADE"]]
    assert torch.isfinite(loss)


def test_chinese_characters_are_tokenized_as_text(tok) -> None:
    chars = list("自发性结膜下出血")
    tags = ["O", "O", "O", "B-ADE", "I-ADE", "I-ADE", "I-ADE", "I-ADE"]
    (e,) = encode_ner(tok, [{"tokens": chars, "tags": tags, "lang": "zh"}], L2I, 64, is_unspaced)
    assert e.input_ids == tok("自发性结膜下出血")["input_ids"]  # the joined text, not one piece per char
    pieces = tok.convert_ids_to_tokens(e.input_ids)
    assert "出血" in pieces
    assert all(pieces[k].strip("▁") for k in e.unit_index)  # never the bare space marker
    # 出 and 血 share a piece -> one unit; 血 continues it
    assert e.word_unit[6] == e.word_unit[7] and e.word_first[6] and not e.word_first[7]
    assert len(e.unit_index) == len(chars) - 1
    assert [LABELS[i] for i in e.unit_labels] == ["O", "O", "O", "B-ADE", "I-ADE", "I-ADE", "I-ADE"]
    # predictions come back one per character, the shared piece's entity continued
    pred_units = [[L2I[t] for t in ["O", "O", "O", "O", "O", "O", "B-ADE"]]]
    assert decode_words([e], pred_units, LABELS, [len(chars)]) == [["O"] * 6 + ["B-ADE", "I-ADE"]]


def test_english_words_take_their_first_piece(tok) -> None:
    words = ["We", "report", "fulminant", "hepatic", "failure", "."]
    (e,) = encode_ner(tok, [{"tokens": words, "tags": ["O"] * 6, "lang": "en"}], L2I, 64, is_unspaced)
    assert e.input_ids == tok(" ".join(words))["input_ids"]
    pieces = tok.convert_ids_to_tokens(e.input_ids)
    assert len(e.unit_index) == 6 and all(e.word_first)
    assert pieces[e.unit_index[2]] == "▁ful" and pieces[e.unit_index[5]] == "."


def test_long_sentences_are_chunked_without_dropping_words(tok) -> None:
    words = [f"word{i}" for i in range(60)]
    tags = ["B-Drug" if i % 7 == 0 else ("I-Drug" if i % 7 == 1 else "O") for i in range(60)]
    encs = encode_ner(tok, [{"tokens": words, "tags": tags, "lang": "en"}], L2I, 24, is_unspaced)
    assert len(encs) > 1 and all(len(e.input_ids) <= 24 for e in encs)
    assert sum(len(e.word_unit) for e in encs) == 60
    assert [e.word_start for e in encs] == sorted({e.word_start for e in encs})
    preds = [[e.unit_labels[u] for u in range(len(e.unit_index))] for e in encs]  # decode the gold back
    assert decode_words(encs, preds, LABELS, [60]) == [tags]


def test_merge_adjacent_same_type_for_unspaced(tok) -> None:
    from kbioxlm.tasks.ner import merge_adjacent_same_type

    assert merge_adjacent_same_type(["B-Drug", "B-Drug", "I-Drug", "B-ADE", "O", "B-Drug", "B-ADE"]) == [
        "B-Drug",
        "I-Drug",
        "I-Drug",
        "B-ADE",
        "O",
        "B-Drug",
        "B-ADE",
    ]
    chars = list("米诺环素")
    (e,) = encode_ner(tok, [{"tokens": chars, "tags": ["O"] * 4, "lang": "zh"}], L2I, 64, is_unspaced)
    per_unit_b = [[L2I["B-Drug"]] * len(e.unit_index)]
    assert decode_words([e], per_unit_b, LABELS, [4], [True]) == [["B-Drug", "I-Drug", "I-Drug", "I-Drug"]]
    assert decode_words([e], per_unit_b, LABELS, [4], [False])[0][:2] == ["B-Drug", "B-Drug"]


def test_chunk_seam_continues_entity() -> None:
    a = NEREncoding([0, 5, 2], [1], [0], 0, 0, [0], [True])
    b = NEREncoding([0, 6, 2], [1], [0], 0, 1, [0], [True])
    assert decode_words([a, b], [[L2I["B-ADE"]], [L2I["B-ADE"]]], LABELS, [2]) == [["B-ADE", "I-ADE"]]
    assert decode_words([a, b], [[L2I["B-ADE"]], [L2I["B-Drug"]]], LABELS, [2]) == [["B-ADE", "B-Drug"]]


def test_tagger_loss_and_batched_decode(tok) -> None:
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    enc_model = XLMRobertaModel(
        XLMRobertaConfig(
            vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    model = EncoderCRFTagger(enc_model, LABELS)
    recs = [
        {
            "tokens": list("服用阿司匹林后出现皮疹"),
            "tags": ["O", "O", "B-Drug", "I-Drug", "I-Drug", "I-Drug", "O", "O", "O", "B-ADE", "I-ADE"],
            "lang": "zh",
        },
        {"tokens": ["aspirin", "rash"], "tags": ["B-Drug", "B-ADE"], "lang": "en"},
    ]
    encs = encode_ner(tok, recs, L2I, 64, is_unspaced)
    batch = collate_ner(encs, tok.pad_token_id)
    loss = model(**batch)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    paths = model.decode(**{k: v for k, v in batch.items() if k != "labels"})
    assert [len(p) for p in paths] == [len(e.unit_index) for e in encs]
    words = decode_words(encs, paths, LABELS, [len(r["tokens"]) for r in recs])
    assert [len(w) for w in words] == [11, 2] and all(is_valid_iob2(w) for w in words)
