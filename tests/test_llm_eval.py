"""``llm-eval``: prompts → stub endpoint → parsing → the fine-tuning metrics; few-shot demos; cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_stub import OpenAIStub, last_user, stage_main

from kbioxlm.chat.cache import Cache
from kbioxlm.chat.client import ChatClient
from kbioxlm.llm.evaluate import run_llm_eval
from kbioxlm.tasks.metrics import binary_scores, multilabel_scores
from kbioxlm.tasks.protocols import sample_fewshot
from kbioxlm.tasks.readers import read_ner

ZH = [
    ("1", "服用阿司匹林后出现皮疹。", {"阿司匹林": "Drug", "皮疹": "ADE"}),
    ("2", "肝素导致出血。", {"肝素": "Drug", "出血": "ADE"}),
    ("3", "华法林引起瘀伤。", {"华法林": "Drug", "瘀伤": "ADE"}),
]
NER_ANSWERS = {
    "服用阿司匹林": '```json\n[{"entity": "阿司匹林", "type": "Drug"}]\n```',  # misses 皮疹
    "肝素导致": "肝素（药物）\n出血（不良反应）",
    "华法林引起": "I am not sure what you mean.",  # unparsed
}


def _conll(path: Path, rows: list[tuple[str, str, dict[str, str]]], zh: bool) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for rid, sent, ents in rows:
            toks = list(sent) if zh else sent.split()
            tags = ["O"] * len(toks)
            for ent, typ in ents.items():
                etoks = list(ent) if zh else ent.split()
                for i in range(len(toks) - len(etoks) + 1):
                    if toks[i : i + len(etoks)] == etoks:
                        tags[i : i + len(etoks)] = [f"B-{typ}"] + [f"I-{typ}"] * (len(etoks) - 1)
            fh.write(f"-DOCSTART-\t{rid}\n\n" + "".join(f"{t}\t{g}\n" for t, g in zip(toks, tags)) + "\n")
    return path


def _ner_answer(body: dict) -> str:
    text = last_user(body)
    return next(a for k, a in NER_ANSWERS.items() if k in text)


def _client(stub: OpenAIStub) -> ChatClient:
    return ChatClient(base_url=stub.base_url, model="stub", max_retries=0, concurrency=2)


def test_ner_zero_shot_scores_and_caches(tmp_path: Path) -> None:
    test = _conll(tmp_path / "test.txt", ZH, zh=True)
    cache = Cache(tmp_path / "cache.sqlite")
    with OpenAIStub(_ner_answer) as stub:
        res = run_llm_eval("ner", test, _client(stub), tmp_path / "out", cache=cache, progress=False)
        assert stub.n_requests == 3
        sys_prompt = stub.requests[0]["messages"][0]["content"]
        assert "ADE, Drug" in sys_prompt and len(stub.requests[0]["messages"]) == 2
        again = run_llm_eval("ner", test, _client(stub), tmp_path / "out2", cache=cache, progress=False)
        assert stub.n_requests == 3  # every answer came from the cache
    # 3 of 6 gold entities found, no false positives.
    assert (res["precision"], round(res["recall"], 2), round(res["f1"], 2)) == (100.0, 50.0, 66.67)
    assert res["n_unparsed"] == 1 and res["n_test"] == 3 and res["task"] == "ner"
    assert res["metric"].startswith("entity_f1")
    assert again["f1"] == res["f1"] and again["n_cached"] == 3
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["f1"] == res["f1"]
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert preds[1]["raw"] == NER_ANSWERS["肝素导致"] and preds[1]["pred"] == [
        "B-Drug",
        "I-Drug",
        "O",
        "O",
        "B-ADE",
        "I-ADE",
        "O",
    ]


def test_ner_few_shot_uses_finetuning_sampler(tmp_path: Path) -> None:
    test = _conll(tmp_path / "test.txt", ZH, zh=True)
    train_rows = [
        (str(i), f"Drug{i} caused rash{i} today .", {f"Drug{i}": "Drug", f"rash{i}": "ADE"}) for i in range(8)
    ]
    train = _conll(tmp_path / "train.txt", train_rows, zh=False)
    with OpenAIStub(_ner_answer) as stub:
        res = run_llm_eval(
            "ner", test, _client(stub), tmp_path / "out", train_path=train, shots=3, seed=7, progress=False
        )
        msgs = stub.requests[0]["messages"]
    picked, ids = sample_fewshot(read_ner(train), 3, 7, "sentence", dataset="ade", lang="en")
    assert res["fewshot_ids"] == ids and res["shots"] == 3 and res["seed"] == 7
    users = [m["content"] for m in msgs if m["role"] == "user"]
    assistants = [m["content"] for m in msgs if m["role"] == "assistant"]
    assert len(users) == 4 and len(assistants) == 3
    for rec, u, a in zip(picked, users, assistants):
        n = rec["id"]
        assert u == f"Sentence: Drug{n} caused rash{n} today ."
        assert a == f"Drug{n} (Drug)\nrash{n} (ADE)"


def test_re_and_dc_via_cli(tmp_path: Path) -> None:
    gad = tmp_path / "gad.json"
    rows = [
        ("0", "@GENE$ 与 @DISEASE$ 相关。", "1"),
        ("1", "@GENE$ 和 @DISEASE$ 无关。", "0"),
        ("2", "@GENE$ 可能影响 @DISEASE$。", "1"),
        ("3", "@GENE$ 研究 @DISEASE$。", "0"),
    ]
    gad.write_text(
        "".join(json.dumps({"id": i, "sentence": s, "label": lab}, ensure_ascii=False) + "\n" for i, s, lab in rows),
        encoding="utf-8",
    )
    hoc = tmp_path / "hoc.json"
    hrows = [
        ("10", "VEGF drives angiogenesis .", [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
        ("11", "Apoptosis and EGFR signaling .", [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]),
    ]
    hoc.write_text(
        "".join(json.dumps({"id": i, "sentence": s, "label": lab}) + "\n" for i, s, lab in hrows), encoding="utf-8"
    )
    answers = {
        "相关": "是",
        "无关": "答案：否",
        "可能影响": "The answer is unclear.",
        "研究": "Yes.",
        "VEGF": "7. inducing angiogenesis",
        "Apoptosis": "- resisting cell death\n- inducing angiogenesis",
    }

    def answer(body: dict) -> str:
        text = last_user(body)
        return next(a for k, a in answers.items() if k in text)

    with OpenAIStub(answer) as stub:
        for task, f in (("re", gad), ("dc", hoc)):
            rc = stage_main(
                [
                    "llm-eval",
                    "--task",
                    task,
                    "--test",
                    str(f),
                    "--base-url",
                    stub.base_url,
                    "--model",
                    "stub",
                    "--out",
                    str(tmp_path / task),
                    "--no-progress",
                ]
            )
            assert rc == 0
        assert "1. activating invasion and metastasis" in stub.requests[-1]["messages"][0]["content"]
    re_res = json.loads((tmp_path / "re" / "results.json").read_text())
    assert re_res["f1"] == pytest.approx(binary_scores([1, 0, 1, 0], [1, 0, 0, 1])["f1"])
    assert re_res["n_unparsed"] == 1 and re_res["metric"] == "positive_class_f1"
    dc_res = json.loads((tmp_path / "dc" / "results.json").read_text())
    want = multilabel_scores([r[2] for r in hrows], [[0, 0, 0, 0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]])
    assert dc_res["f1"] == pytest.approx(want["f1"]) and dc_res["macro_f1"] == pytest.approx(want["macro_f1"])
    assert set(dc_res) >= {"task", "metric", "f1", "precision", "recall", "n_test"}


def test_llm_eval_needs_train_for_shots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = _conll(tmp_path / "test.txt", ZH, zh=True)
    rc = stage_main(
        [
            "llm-eval",
            "--task",
            "ner",
            "--test",
            str(test),
            "--shots",
            "10",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "--train" in capsys.readouterr().err


def test_real_command_registers_both_stages() -> None:
    """The real ``kbioxlm`` parser knows ``translate`` and ``llm-eval`` (other stages permitting)."""
    import kbioxlm.cli as real

    try:
        parser = real.build_parser()
    except Exception as exc:  # noqa: BLE001 - another stage's module failing to import is not ours
        if any(ours in repr(exc) for ours in ("kbioxlm.translate", "kbioxlm.llm", "kbioxlm.chat")):
            raise
        pytest.skip(f"another stage's CLI does not import yet: {exc!r}")
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"translate", "llm-eval"} <= set(sub.choices)  # type: ignore[union-attr]


def test_prompt_dir_overrides_template(tmp_path: Path) -> None:
    gad = tmp_path / "gad.json"
    gad.write_text(json.dumps({"id": "0", "sentence": "@GENE$ causes @DISEASE$ .", "label": "1"}) + "\n")
    pdir = tmp_path / "prompts"
    pdir.mkdir()
    (pdir / "re.txt").write_text("[user]\nRelated? {{text}}\n", encoding="utf-8")
    with OpenAIStub(lambda b: "yes") as stub:
        custom = run_llm_eval("re", gad, _client(stub), tmp_path / "a", prompt_dir=str(pdir), progress=False)
        default = run_llm_eval("re", gad, _client(stub), tmp_path / "b", progress=False)
        assert stub.requests[0]["messages"] == [{"role": "user", "content": "Related? @GENE$ causes @DISEASE$ ."}]
    assert custom["prompt_version"] != default["prompt_version"] and custom["f1"] == 100.0


def test_unreachable_endpoint_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = _conll(tmp_path / "test.txt", ZH, zh=True)
    out = tmp_path / "o"
    rc = stage_main(
        [
            "llm-eval",
            "--task",
            "ner",
            "--test",
            str(test),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--out",
            str(out),
            "--max-retries",
            "0",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "every request failed (3 of 3)" in err
    assert not (out / "results.json").exists() and not (out / "predictions.jsonl").exists()


def test_failures_beyond_max_failed_stop_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = _conll(tmp_path / "test.txt", ZH, zh=True)
    argv = [
        "llm-eval",
        "--task",
        "ner",
        "--test",
        str(test),
        "--model",
        "stub",
        "--max-retries",
        "0",
        "--concurrency",
        "1",
        "--no-progress",
    ]
    with OpenAIStub(_ner_answer) as stub:
        stub.errors.append((400, {}))  # one request fails for good; the other two are answered
        rc = stage_main([*argv, "--base-url", stub.base_url, "--out", str(tmp_path / "strict")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "1 of 3 requests failed (more than --max-failed 0)" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "strict" / "results.json").exists()
        stub.errors.append((400, {}))
        rc = stage_main([*argv, "--base-url", stub.base_url, "--out", str(tmp_path / "lenient"), "--max-failed", "1"])
    assert rc == 0
    res = json.loads((tmp_path / "lenient" / "results.json").read_text())
    assert res["n_failed"] == 1 and res["n_test"] == 3
