"""Translation: markers, projection, every QC rejection reason, the CLI, the KB and HF backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_stub import OpenAIStub, last_user, stage_main

from kbioxlm.chat.cache import Cache
from kbioxlm.chat.client import ChatClient
from kbioxlm.conll import bio_spans
from kbioxlm.errors import KbioxlmError
from kbioxlm.translate.backends import OpenAIBackend
from kbioxlm.translate.markers import parse_markers, wrap_ner
from kbioxlm.translate.dataset import translate_dataset
from kbioxlm.translate.projection import ProjectionError, project, tokenize
from kbioxlm.translate.qc import length_ratio_ok, residue_words


def write_conll(path: Path, sents: list[tuple[str, list[str], list[str]]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for sid, toks, tags in sents:
            fh.write(f"-DOCSTART-\t{sid}\n\n")
            for t, g in zip(toks, tags):
                fh.write(f"{t}\t{g}\n")
            fh.write("\n")
    return path


# ------------------------------------------------------------------------------------ markers
def test_wrap_and_parse_round_trip_with_reordering() -> None:
    toks = "After taking Metoclopramide , she developed dyskinesia and a period of unresponsiveness .".split()
    tags = ["O", "O", "B-Drug", "O", "O", "O", "B-ADE", "O", "B-ADE", "I-ADE", "I-ADE", "I-ADE", "O"]
    m = wrap_ner(toks, tags, "en")
    assert m.text == (
        "After taking <1>Metoclopramide</1> , she developed <2>dyskinesia</2> and <3>a period of unresponsiveness</3> ."
    )
    assert [(e.n, e.type, e.text) for e in m.entities] == [
        (1, "Drug", "Metoclopramide"),
        (2, "ADE", "dyskinesia"),
        (3, "ADE", "a period of unresponsiveness"),
    ]
    # Entities may move; tolerated tag spellings: inner spaces, full-width brackets.
    raw = "服用< 1 >甲氧氯普胺</1>后，她出现了＜3＞一段时间的无反应＜/3＞和<2> 运动障碍 </2>。"
    p = parse_markers(raw, [1, 2, 3])
    assert p.problems == []
    assert {n: p.text[s:e] for n, (s, e) in p.spans.items()} == {1: "甲氧氯普胺", 2: "运动障碍", 3: "一段时间的无反应"}
    assert "<" not in p.text and "＜" not in p.text


def test_bio_spans_reads_stray_inside_tag_as_new_entity() -> None:
    assert bio_spans(["B-Drug", "I-ADE", "O", "I-Drug", "I-Drug"]) == [(0, 1, "Drug"), (1, 2, "ADE"), (3, 5, "Drug")]


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("<1>甲</1>和乙", "missing_marker"),
        ("<1>甲</1>和<2>乙", "missing_marker"),
        ("<1>甲</1><1>甲</1>和<2>乙</2>", "duplicate_marker"),
        ("<1>甲</1>和<2>乙</2><3>丙</3>", "unexpected_marker"),
        ("<1>甲<2>乙</2></1>", "malformed_marker"),
        ("</1>甲<1>和<2>乙</2>", "malformed_marker"),
        ("<1>甲</1>和<2>乙</2 丙", "malformed_marker"),
        ("<1> </1>和<2>乙</2>", "empty_entity"),
    ],
)
def test_parse_markers_problems(raw: str, reason: str) -> None:
    reasons = [r for r, _ in parse_markers(raw, [1, 2]).problems]
    assert reason in reasons


def test_less_than_sign_in_text_is_not_a_marker() -> None:
    p = parse_markers("p < 0.05，<1>甲</1>小于< 230", [1])
    assert p.problems == [] and p.text == "p < 0.05，甲小于< 230"


# --------------------------------------------------------------------------------- projection
def test_projection_chinese_is_character_level_and_keeps_latin_words() -> None:
    text = "服用MTX后出现5-FU相关皮疹。"
    toks, tags = project(text, [(2, 5, "Drug"), (8, 16, "ADE")], "zh")
    assert toks == ["服", "用", "MTX", "后", "出", "现", "5-FU", "相", "关", "皮", "疹", "。"]
    assert tags == ["O", "O", "B-Drug", "O", "O", "O", "B-ADE", "I-ADE", "I-ADE", "I-ADE", "I-ADE", "O"]


def test_projection_english_splits_punctuation() -> None:
    text = "Aspirin-induced rash (severe), 1,200 mg."
    assert [t for t, _, _ in tokenize(text)] == ["Aspirin-induced", "rash", "(", "severe", ")", ",", "1,200", "mg", "."]
    toks, tags = project(text, [(16, 20, "ADE"), (0, 7, "Drug")], "en")
    # Tokens are cut at entity boundaries: no token is half inside an entity.
    assert toks[:5] == ["Aspirin", "-", "induced", "rash", "("]
    assert tags[:5] == ["B-Drug", "O", "O", "B-ADE", "O"]
    with pytest.raises(ProjectionError):
        project(text, [(0, 7, "Drug"), (3, 10, "ADE")], "en")  # overlap


def test_residue_and_ratio_heuristics() -> None:
    assert residue_words("<1>Naranjo</1>评分为MTX和beta阻滞剂", [], "", "en", "zh")[0] is False
    bad, detail = residue_words("患者with皮疹", [], "", "en", "zh")
    assert bad and "with" in detail
    assert residue_words("患者出现 severe itchy rash 症状", [], "", "en", "zh")[0] is True  # 3 lowercase words
    assert residue_words("patient had 皮疹", [], "", "zh", "en")[0] is True  # CJK left in an English target
    assert length_ratio_ok("a" * 100, "字" * 28, "en", "zh", 3.0)[0] is True
    assert length_ratio_ok("a" * 100, "字" * 300, "en", "zh", 3.0)[0] is False


# -------------------------------------------------------------------------- pipeline + stub
SENTS = [
    ("ok", "Aspirin caused severe rash .", ["B-Drug", "O", "B-ADE", "I-ADE", "O"]),
    ("moved", "Rash after aspirin .", ["B-ADE", "O", "B-Drug", "O"]),
    ("missing", "Heparin caused bleeding .", ["B-Drug", "O", "B-ADE", "O"]),
    ("dup", "Warfarin caused bruising .", ["B-Drug", "O", "B-ADE", "O"]),
    ("extra", "Insulin caused hypoglycemia .", ["B-Drug", "O", "B-ADE", "O"]),
    ("nested", "Digoxin caused nausea .", ["B-Drug", "O", "B-ADE", "O"]),
    ("empty", "Lithium caused tremor .", ["B-Drug", "O", "B-ADE", "O"]),
    ("residue", "Cisplatin caused ototoxicity .", ["B-Drug", "O", "B-ADE", "O"]),
    ("ratio", "Opioids caused constipation .", ["B-Drug", "O", "B-ADE", "O"]),
    ("blank", "Statins caused myopathy .", ["B-Drug", "O", "B-ADE", "O"]),
    ("error", "Amiodarone caused fibrosis .", ["B-Drug", "O", "B-ADE", "O"]),
]
ANSWERS = {
    "Aspirin": "<1>阿司匹林</1>引起<2>严重皮疹</2>。",
    "Rash": "<2>阿司匹林</2>后<1>皮疹</1>。",
    "Heparin": "<1>肝素</1>引起出血。",
    "Warfarin": "<1>华法林</1>引起<2>瘀伤</2><2>瘀伤</2>。",
    "Insulin": "<1>胰岛素</1>引起<2>低血糖</2><3>症</3>。",
    "Digoxin": "<1>地高辛引起<2>恶心</2></1>。",
    "Lithium": "<1>锂</1>引起<2></2>。",
    "Cisplatin": "<1>顺铂</1> caused the <2>耳毒性</2>。",
    "Opioids": "<1>阿片类</1>引起<2>便秘</2>。" + "很长的重复句子" * 40,
    "Statins": "   ",
}
EXPECTED_REASON = {
    "missing": "missing_marker",
    "dup": "duplicate_marker",
    "extra": "unexpected_marker",
    "nested": "malformed_marker",
    "empty": "empty_entity",
    "residue": "source_residue",
    "ratio": "length_ratio",
    "blank": "empty_translation",
    "error": "backend_error",
}


def scripted(body: dict) -> str:
    text = last_user(body)
    if text.startswith("Source:"):  # the --check prompt
        return "PROBLEM: the severity was dropped" if "严重" not in text and "阿司匹林" in text else "OK"
    for key, ans in ANSWERS.items():
        if key in text:
            return ans
    raise RuntimeError("no scripted answer")  # -> HTTP 500 -> backend_error after retries


@pytest.fixture
def ner_file(tmp_path: Path) -> Path:
    return write_conll(tmp_path / "en.txt", [(i, s.split(), t) for i, s, t in SENTS])


def _client(stub: OpenAIStub, **kw: object) -> ChatClient:
    c = ChatClient(base_url=stub.base_url, model="stub", max_retries=1, backoff=0.0, concurrency=2, **kw)  # type: ignore[arg-type]
    return c


def test_every_rejection_reason_and_nothing_dropped(ner_file: Path) -> None:
    with OpenAIStub(scripted) as stub:
        res = translate_dataset("ner", ner_file, "en", "zh", OpenAIBackend(_client(stub)), Cache(None), progress=False)
    s = res.summary
    assert s["n_input"] == len(SENTS) == s["n_accepted"] + s["n_review"]
    by_id = {r["id"]: r for r in res.review}
    for sid, reason in EXPECTED_REASON.items():
        assert reason in by_id[sid]["reasons"], (sid, by_id.get(sid))
        assert s["reasons"][reason] >= 1
    assert by_id["residue"]["raw"] == ANSWERS["Cisplatin"] and by_id["residue"]["source"].startswith("<1>Cisplatin</1>")
    acc = {r["id"]: r for r in res.accepted}
    assert set(acc) == {"ok", "moved"}
    assert acc["ok"] == {
        "id": "ok",
        "lang": "zh",
        "tokens": list("阿司匹林引起严重皮疹。"),
        "tags": ["B-Drug", "I-Drug", "I-Drug", "I-Drug", "O", "O", "B-ADE", "I-ADE", "I-ADE", "I-ADE", "O"],
    }
    assert acc["moved"]["tags"] == ["B-Drug", "I-Drug", "I-Drug", "I-Drug", "O", "B-ADE", "I-ADE", "O"]


def test_llm_check_flags_omissions(ner_file: Path) -> None:
    with OpenAIStub(scripted) as stub:
        res = translate_dataset(
            "ner",
            ner_file,
            "en",
            "zh",
            OpenAIBackend(_client(stub)),
            Cache(None),
            checker=_client(stub),
            progress=False,
        )
        check_requests = [b for b in stub.requests if last_user(b).startswith("Source:")]
    by_id = {r["id"]: r for r in res.review}
    assert by_id["moved"]["reasons"] == ["llm_flagged"]  # "严重" absent -> scripted PROBLEM
    assert "severity" in by_id["moved"]["details"][0]
    assert [r["id"] for r in res.accepted] == ["ok"]
    assert res.summary["n_check_requests"] == len(check_requests) == 2  # only accepted items are checked


def test_seqcls_placeholders_must_survive(tmp_path: Path) -> None:
    rows = [
        {"id": "0", "sentence": "@GENE$ variants increase risk of @DISEASE$ in adults .", "label": "1"},
        {"id": "1", "sentence": "No link between @GENE$ and @DISEASE$ was found .", "label": "0"},
    ]
    f = tmp_path / "gad.json"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def answer(body: dict) -> str:
        t = last_user(body)
        return "@GENE$ 变异增加成人患@DISEASE$的风险。" if "variants" in t else "未发现@基因$与@DISEASE$之间的联系。"

    with OpenAIStub(answer) as stub:
        res = translate_dataset("seqcls", f, "en", "zh", OpenAIBackend(_client(stub)), Cache(None), progress=False)
        assert "@GENE$" in stub.requests[0]["messages"][0]["content"]  # the prompt asks to keep them
    assert res.accepted == [{"id": "0", "sentence": "@GENE$ 变异增加成人患@DISEASE$的风险。", "label": "1"}]
    assert res.review[0]["id"] == "1" and res.review[0]["reasons"] == ["placeholder_mismatch"]


def test_cli_writes_conll_review_summary_and_uses_fixes(ner_file: Path, tmp_path: Path) -> None:
    out, review, cache = tmp_path / "zh.txt", tmp_path / "review.jsonl", tmp_path / "c.sqlite"
    with OpenAIStub(scripted) as stub:
        argv = [
            "translate",
            "--task",
            "ner",
            "--input",
            str(ner_file),
            "--source-lang",
            "en",
            "--target-lang",
            "zh",
            "--backend",
            "openai",
            "--base-url",
            stub.base_url,
            "--model",
            "stub",
            "--out",
            str(out),
            "--review",
            str(review),
            "--cache",
            str(cache),
            "--max-retries",
            "0",
            "--no-progress",
            "--summary",
            str(tmp_path / "summary.json"),
        ]
        assert stage_main(argv) == 0
        first = stub.n_requests
        text = out.read_text(encoding="utf-8")
        assert text.startswith("-DOCSTART-\tok\n\n阿\tB-Drug\n司\tI-Drug\n")
        rows = [json.loads(line) for line in review.read_text(encoding="utf-8").splitlines()]
        assert {r["id"] for r in rows} == set(EXPECTED_REASON)
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["n_review"] == len(rows) and summary["n_accepted"] == 2
        # A reviewer fixes two items: one correctly, one still broken.
        for r in rows:
            if r["id"] == "missing":
                r["fix"] = "<1>肝素</1>引起<2>出血</2>。"
            if r["id"] == "dup":
                r["fix"] = "<1>华法林</1>引起瘀伤。"
        fixes = tmp_path / "fixes.jsonl"
        fixes.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        assert stage_main(argv + ["--fixes", str(fixes)]) == 0
        # Cached answers are reused; only the item that failed (no cache entry) is asked again.
        assert stub.n_requests - first == 1
    text2 = out.read_text(encoding="utf-8")
    assert "-DOCSTART-\tmissing\n\n肝\tB-Drug\n" in text2
    rows2 = {json.loads(line)["id"]: json.loads(line) for line in review.read_text(encoding="utf-8").splitlines()}
    assert "missing" not in rows2 and rows2["dup"]["reasons"][:2] == ["fix_invalid", "missing_marker"]


def test_cli_bad_input_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "0", "sentence": "x", "label": "1"}\n{not json\n', encoding="utf-8")
    rc = stage_main(
        [
            "translate",
            "--task",
            "seqcls",
            "--input",
            str(bad),
            "--source-lang",
            "en",
            "--target-lang",
            "zh",
            "--backend",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--out",
            str(tmp_path / "o.json"),
            "--review",
            str(tmp_path / "r.jsonl"),
            "--no-cache",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}:2" in err and not (tmp_path / "o.json").exists()
    with pytest.raises(KbioxlmError):
        ChatClient(base_url=None, model="m")  # no endpoint anywhere (env cleared by the next line's check)


@pytest.fixture(autouse=True)
def _no_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("KBIOXLM_BASE_URL", "OPENAI_BASE_URL", "KBIOXLM_MODEL", "KBIOXLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(k, raising=False)


# ---------------------------------------------------------------------------------- KB backend
def _kb(tmp_path: Path) -> Path:
    from kbioxlm.kb.store import KnowledgeBase

    path = tmp_path / "kb.sqlite"
    with KnowledgeBase(path, create=True) as kb:
        kb.add_concepts([("C1", "Drug", "t"), ("C2", "ADE", "t"), ("C3", "Gene", "t")])
        kb.add_names(
            [
                ("C1", "en", "aspirin", 1, "t"),
                ("C1", "zh", "阿司匹林", 1, "t"),
                ("C2", "en", "skin rash", 1, "t"),
                ("C2", "zh", "皮疹", 1, "t"),
                ("C2", "zh", "皮肤疹子", 0, "t"),
                ("C3", "en", "BRCA1", 1, "t"),
                ("C3", "zh", "乳腺癌1号基因", 1, "t"),
            ]
        )
        kb.commit()
    return path


def test_kb_backend_code_switches_entities(tmp_path: Path) -> None:
    from kbioxlm.translate.backends import KBBackend

    f = write_conll(
        tmp_path / "en.txt",
        [
            ("a", "Aspirin caused skin rash .".split(), ["B-Drug", "O", "B-ADE", "I-ADE", "O"]),
            ("b", "Aspirin caused vertigo .".split(), ["B-Drug", "O", "B-ADE", "O"]),
        ],
    )
    kb_path = str(_kb(tmp_path))
    res = translate_dataset("ner", f, "en", "zh", KBBackend(kb_path), Cache(None), progress=False)
    assert res.accepted == [
        {
            "id": "a",
            "lang": "zh",
            "tokens": ["阿", "司", "匹", "林", "caused", "皮", "疹", "."],
            "tags": ["B-Drug", "I-Drug", "I-Drug", "I-Drug", "O", "B-ADE", "I-ADE", "O"],
        }
    ]
    assert res.review[0]["id"] == "b" and res.review[0]["reasons"] == ["kb_no_entry"]
    partial = translate_dataset(
        "ner", f, "en", "zh", KBBackend(kb_path, allow_partial=True), Cache(None), progress=False
    )
    assert [r["id"] for r in partial.accepted] == ["a", "b"]
    # Mined pairs (kb mine-pairs) are looked up first, case-insensitively.
    kbp = KBBackend(kb_path)
    kbp.kb.conn.execute("INSERT INTO pair VALUES ('C9', 'ADE', 'en', 'vertigo', 'zh', '眩晕', 3, 'mined')")
    kbp.kb.commit()
    assert kbp.lookup("Vertigo", "en", "zh") == "眩晕" and kbp.lookup("vertigo", "en", "de") is None
    # seqcls: dictionary matches in running text, placeholders untouched.
    g = tmp_path / "gad.json"
    g.write_text(
        json.dumps({"id": "0", "sentence": "BRCA1 and aspirin near @GENE$ in @DISEASE$ .", "label": "1"}) + "\n"
    )
    res2 = translate_dataset("seqcls", g, "en", "zh", KBBackend(kb_path), Cache(None), progress=False)
    assert res2.accepted[0]["sentence"] == "乳腺癌1号基因 and 阿司匹林 near @GENE$ in @DISEASE$ ."


# ---------------------------------------------------------------------------------- HF backend
def test_hf_backend_plumbing_rejects_garbage(tmp_path: Path) -> None:
    """A tiny random T5 built here: the output is garbage and must land in review with reasons."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in "aspirin caused severe rash . < > / 1 2 阿 司 匹 林".split():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    model_dir = tmp_path / "tiny-t5"
    fast.save_pretrained(model_dir)
    cfg = T5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    import torch

    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(model_dir)
    f = write_conll(
        tmp_path / "en.txt",
        [(str(i), "aspirin caused severe rash .".split(), ["B-Drug", "O", "B-ADE", "I-ADE", "O"]) for i in range(3)],
    )
    from kbioxlm.translate.backends import HFBackend

    backend = HFBackend(str(model_dir), batch_size=2, max_new_tokens=8, device="cpu", progress=False)
    res = translate_dataset("ner", f, "en", "zh", backend, Cache(None), progress=False)
    assert res.summary["n_input"] == 3 and res.summary["n_review"] == 3 and res.accepted == []
    assert all(r["raw"] is not None and r["reasons"] for r in res.review)
    assert res.summary["n_translated"] == 1  # three identical sentences: translated once
    with pytest.raises(KbioxlmError):
        HFBackend(str(tmp_path / "nope"))
