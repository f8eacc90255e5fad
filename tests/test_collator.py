"""KnowledgeCollator: real <mask> id, whole-word / whole-entity / relation units, 80/10/10, pairs, resume."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from kbioxlm.pretrain import PRETRAIN_TASKS  # noqa: E402
from kbioxlm.pretrain.collator import IGNORE_INDEX, KnowledgeCollator  # noqa: E402

EN_TEXT = (
    "Acetaminophen-induced hepatotoxicity is a common cause of acute liver failure in adults, "
    "and N-acetylcysteine remains the standard antidote when given early."
)
ZH_TEXT = "对儿童SARS细胞亚群的研究表明，与成人相比，儿童细胞下降不明显，证明上述推测成立。阿司匹林可能导致胃出血。"


@pytest.fixture(scope="module")
def tok(xlmr_tokenizer_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(xlmr_tokenizer_path))


def span(text: str, sub: str, **extra) -> dict:
    s = text.index(sub)
    return {"start": s, "end": s + len(sub), **extra}


def ent(text: str, sub: str, lang: str = "en", concept: str = "C1") -> dict:
    return span(text, sub, concept=concept, lang=lang, switched=False)


def reference(tok, text: str, pair: str | None = None) -> tuple[list[int], list[str], list[tuple[int, int]], list]:
    enc = tok(text, pair, return_offsets_mapping=True) if pair else tok(text, return_offsets_mapping=True)
    return enc["input_ids"], tok.convert_ids_to_tokens(enc["input_ids"]), enc["offset_mapping"], enc.sequence_ids()


def masked_positions(batch, row: int) -> set[int]:
    return set(torch.nonzero(batch["mlm_labels"][row] != IGNORE_INDEX).flatten().tolist())


def en_words(pieces: list[str], special: set[int]) -> list[list[int]]:
    """Reference grouping: a word starts at each '▁'-initial piece."""
    words: list[list[int]] = []
    for i, p in enumerate(pieces):
        if i in special:
            continue
        if p.startswith("▁") or not words:
            words.append([i])
        else:
            words[-1].append(i)
    return words


def test_masks_carry_real_mask_id_and_labels_hold_originals(tok):
    coll = KnowledgeCollator(tok, max_length=64, seed=3, mask_replace_prob=1.0, random_replace_prob=0.0)
    recs = [{"id": str(i), "lang": "en", "text": EN_TEXT} for i in range(8)]
    batch = coll(recs)
    ids, *_ = reference(tok, EN_TEXT)
    assert tok.mask_token_id == 250001
    n_masked = 0
    for r in range(len(recs)):
        pos = masked_positions(batch, r)
        assert pos, "every example masks something"
        n_masked += len(pos)
        for j in range(len(ids)):
            if j in pos:
                assert batch["input_ids"][r, j].item() == tok.mask_token_id
                assert batch["mlm_labels"][r, j].item() == ids[j]
            else:
                assert batch["input_ids"][r, j].item() == ids[j]
        # special tokens never masked
        assert 0 not in pos and len(ids) - 1 not in pos
    assert (batch["task_ids"] == PRETRAIN_TASKS.index("mlm")).all()
    assert (batch["pair_labels"] == IGNORE_INDEX).all()
    assert batch["attention_mask"].sum().item() == len(recs) * len(ids)


def test_english_whole_word_masking(tok):
    coll = KnowledgeCollator(tok, max_length=64, seed=0)
    ids, pieces, _, _ = reference(tok, EN_TEXT)
    words = en_words(pieces, {0, len(ids) - 1})
    assert any(len(w) > 2 for w in words)  # the text has multi-piece words to test against
    batch = coll([{"id": "x", "lang": "en", "text": EN_TEXT}] * 40)
    split_words = 0
    for r in range(40):
        pos = masked_positions(batch, r)
        for w in words:
            hit = pos.intersection(w)
            split_words += bool(hit) and len(hit) != len(w)
        frac = len(pos) / (len(ids) - 2)
        assert 0.05 < frac < 0.3
    assert split_words == 0


def test_chinese_whole_word_masking_follows_jieba(tok):
    import jieba

    coll = KnowledgeCollator(tok, max_length=96, seed=1)
    ids, pieces, offsets, _ = reference(tok, ZH_TEXT)
    char_word = {}
    for w, (_, s, e) in enumerate(jieba.Tokenizer().tokenize(ZH_TEXT)):
        for c in range(s, e):
            char_word[c] = w
    batch = coll([{"id": "z", "lang": "zh", "text": ZH_TEXT}] * 40)
    for r in range(40):
        pos = masked_positions(batch, r)
        assert pos
        masked_words = {char_word[c] for j in pos for c in range(*offsets[j])}
        # every token touching a masked jieba word is masked: no word is half-masked
        for j in range(1, len(ids) - 1):
            touched = {char_word[c] for c in range(*offsets[j])}
            if touched & masked_words:
                assert j in pos, (pieces[j], r)


def test_document_entities_share_budget_one_to_one(tok):
    text = EN_TEXT
    ents = [ent(text, "acute liver failure"), ent(text, "N-acetylcysteine"), ent(text, "hepatotoxicity")]
    ids, pieces, offsets, _ = reference(tok, text)
    ent_tokens = [
        [j for j in range(1, len(ids) - 1) if offsets[j][0] < e["end"] and offsets[j][1] > e["start"]] for e in ents
    ]
    all_ent = {j for u in ent_tokens for j in u}
    share = {}
    for ratio in (0.0, 0.5, 1.0):
        coll = KnowledgeCollator(tok, max_length=64, seed=2, wwm_entity_ratio=ratio)
        batch = coll([{"id": "d", "lang": "en", "text": text, "entities": ents}] * 200)
        in_ent = total = 0
        for r in range(200):
            pos = masked_positions(batch, r)
            # entity tokens are masked as whole entities only, whatever the share
            assert all(set(u) <= pos for u in ent_tokens if pos & set(u))
            in_ent += len(pos & all_ent)
            total += len(pos)
        share[ratio] = in_ent / total
    assert share[0.0] == 0.0
    assert 0.35 < share[0.5] < 0.65, share  # paper A.1: whole-word : entity masking = 1 : 1
    assert share[1.0] > 0.75, share


def test_entity_records_mask_whole_entities_only(tok):
    text = (
        "The patient took 阿司匹林 for chronic pain and developed gastric bleeding and severe 肝损伤 within two weeks."
    )
    names = ["阿司匹林", "chronic pain", "gastric bleeding", "肝损伤"]
    rec = {"id": "e", "lang": "en", "task": "entity", "text": text, "entities": [ent(text, n) for n in names]}
    ids, pieces, offsets, _ = reference(tok, text)
    units = [
        {j for j in range(1, len(ids) - 1) if offsets[j][0] < e["end"] and offsets[j][1] > e["start"]}
        for e in rec["entities"]
    ]
    coll = KnowledgeCollator(tok, max_length=64, seed=4)
    batch = coll([rec] * 50)
    n_ent_tokens = sum(len(u) for u in units)
    masked = 0
    for r in range(50):
        pos = masked_positions(batch, r)
        assert pos
        assert pos == set().union(*[u for u in units if u & pos]), "only whole entities are masked"
        masked += len(pos)
    assert (batch["task_ids"] == PRETRAIN_TASKS.index("entity")).all()
    # 15% of entity tokens on average (whole units: coarse), never most of them
    assert 0.08 < masked / (50 * n_ent_tokens) < 0.4

    # max_entity_tokens: entities longer than the limit are never masking units
    long_units = [u for u in units if len(u) > 2]
    assert long_units
    limited = KnowledgeCollator(tok, max_length=64, seed=4, max_entity_tokens=2)
    batch = limited([rec] * 30)
    for r in range(30):
        pos = masked_positions(batch, r)
        assert not any(u & pos for u in long_units)


def test_fact_records_mask_relation_span_even_when_truncated(tok):
    sent = "Laudanum contains approximately ten percent opium poppy extract. " * 6
    text = sent + "</s>罂粟花有关联吗啡"
    rec = {
        "id": "f",
        "lang": "en",
        "task": "fact",
        "text": text,
        "entities": [ent(text, "罂粟花", "zh"), ent(text, "吗啡", "zh")],
        "relations": [span(text, "有关联", rel="associated_with", lang="zh", head=0, tail=1)],
    }
    coll = KnowledgeCollator(tok, max_length=32, seed=5)  # the sentence alone is longer than 32 tokens
    batch = coll([rec] * 20)
    assert batch["input_ids"].shape[1] <= 32
    for r in range(20):
        n = int(batch["attention_mask"][r].sum())
        row = batch["input_ids"][r, :n].tolist()
        labels = batch["mlm_labels"][r, :n].tolist()
        original = [lab if lab != IGNORE_INDEX else t for t, lab in zip(row, labels)]
        rel_tokens = [
            j for j, t in enumerate(tok.convert_ids_to_tokens(original)) if t in ("有", "关联", "有关联", "▁有")
        ]
        assert rel_tokens, tok.convert_ids_to_tokens(original)
        assert all(labels[j] != IGNORE_INDEX for j in rel_tokens)
        assert "吗" in "".join(tok.convert_ids_to_tokens(original)), "the appended fact survives truncation"
    assert (batch["task_ids"] == PRETRAIN_TASKS.index("fact")).all()


def test_80_10_10_replacement(tok):
    rng = random.Random(0)
    words = EN_TEXT.replace(",", "").replace(".", "").split()
    recs = [{"id": str(i), "lang": "en", "text": " ".join(rng.sample(words, len(words)))} for i in range(600)]
    coll = KnowledgeCollator(tok, max_length=64, seed=6)
    batch = coll(recs)
    labels = batch["mlm_labels"]
    sel = labels != IGNORE_INDEX
    inputs = batch["input_ids"][sel]
    orig = labels[sel]
    n = int(sel.sum())
    assert n > 3000
    p_mask = (inputs == tok.mask_token_id).float().mean().item()
    p_keep = (inputs == orig).float().mean().item()
    p_rand = 1 - p_mask - p_keep
    assert abs(p_mask - 0.8) < 0.03 and abs(p_keep - 0.1) < 0.03 and abs(p_rand - 0.1) < 0.03, (p_mask, p_keep, p_rand)
    # overall rate is the 15% budget
    content = batch["attention_mask"].sum().item() - 2 * len(recs)
    assert abs(n / content - 0.15) < 0.03


def test_passage_pairs_labels_and_mlm(tok):
    recs = [
        {
            "id": "p0",
            "task": "passage",
            "text_a": "Aspirin treats pain.",
            "lang_a": "en",
            "text_b": "阿司匹林治疗疼痛。",
            "lang_b": "zh",
            "label": "positive",
        },
        {
            "id": "p1",
            "task": "passage",
            "text_a": "Aspirin treats pain.",
            "lang_a": "en",
            "text_b": "二甲双胍降低血糖。",
            "lang_b": "zh",
            "label": "random",
        },
        {
            "id": "p2",
            "task": "passage",
            "text_a": "Aspirin treats pain.",
            "lang_a": "en",
            "text_b": "It also thins the blood.",
            "lang_b": "en",
            "label": "context",
        },
        {"id": "d", "lang": "en", "text": "A plain monolingual document."},
    ]
    coll = KnowledgeCollator(tok, max_length=64, seed=7)
    batch = coll(recs)
    assert batch["pair_labels"].tolist() == [0, 1, 2, IGNORE_INDEX]
    assert batch["task_ids"].tolist() == [PRETRAIN_TASKS.index("passage")] * 3 + [PRETRAIN_TASKS.index("mlm")]
    for r in range(3):
        ids, _, _, seq = reference(tok, recs[r]["text_a"], recs[r]["text_b"])
        n = int(batch["attention_mask"][r].sum())
        assert n == len(ids)  # both passages encoded as one pair
        pos = masked_positions(batch, r)
        assert pos and all(seq[j] is not None for j in pos)


def test_seeded_and_resumable(tok):
    recs = [{"id": str(i), "lang": "zh" if i % 2 else "en", "text": ZH_TEXT if i % 2 else EN_TEXT} for i in range(6)]
    a = KnowledgeCollator(tok, max_length=64, seed=11)
    b = KnowledgeCollator(tok, max_length=64, seed=11)
    first = a(recs)
    assert torch.equal(first["input_ids"], b(recs)["input_ids"])
    state = a.state_dict()
    nxt = a(recs)
    c = KnowledgeCollator(tok, max_length=64, seed=999)
    c.load_state_dict(state)
    again = c(recs)
    assert torch.equal(nxt["input_ids"], again["input_ids"]) and torch.equal(nxt["mlm_labels"], again["mlm_labels"])
    assert not torch.equal(first["mlm_labels"], nxt["mlm_labels"])  # dynamic: fresh masks each call


def test_rejects_slow_tokenizer_and_bad_probability(tok):
    with pytest.raises(ValueError):
        KnowledgeCollator(tok, mlm_probability=0.0)

    class Slow:
        is_fast = False

    with pytest.raises(ValueError):
        KnowledgeCollator(Slow())


def test_long_documents_get_random_windows_with_whole_entities(tok):
    text = " ".join(f"Patient {i} received aspirin and developed gastric bleeding." for i in range(12))
    ents = []
    start = 0
    while (k := text.find("gastric bleeding", start)) >= 0:
        ents.append({"start": k, "end": k + 16, "concept": "A1", "lang": "en", "switched": False})
        start = k + 1
    coll = KnowledgeCollator(tok, max_length=24, seed=8, wwm_entity_ratio=1.0)
    batch = coll([{"id": "long", "lang": "en", "text": text, "entities": ents}] * 30)
    assert batch["input_ids"].shape[1] <= 24
    windows = set()
    for r in range(30):
        labels = batch["mlm_labels"][r].tolist()
        original = [lab if lab != IGNORE_INDEX else t for t, lab in zip(batch["input_ids"][r].tolist(), labels)]
        pieces = tok.convert_ids_to_tokens(original)
        windows.add(tuple(original[1:4]))
        assert pieces[1].startswith("▁")  # windows start at a word
        # every complete "gastric bleeding" in the window is masked whole or not at all
        unit = tok.tokenize("gastric bleeding")
        for k in range(len(pieces) - len(unit) + 1):
            if pieces[k : k + len(unit)] == unit:
                flags = {labels[k + m] != IGNORE_INDEX for m in range(len(unit))}
                assert len(flags) == 1, (pieces, labels)
    assert len(windows) > 5  # dynamic windows over the long document
