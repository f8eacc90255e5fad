"""Bad input, existing outputs and failed backends: a clear error, and nothing lost (docs/robustness.md).

One test (or a few) per defect found when every command was probed with bad input, interruptions
and failing backends; each failed on the code before the fix. The randomised (hypothesis) checks of
every reader family are in ``test_robustness_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kbioxlm.cli import main

torch = pytest.importorskip("torch")


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Run ``kbioxlm`` in-process; returns (exit status, stderr) and checks errors are one line."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1, err
    return rc, err


def error_line(err: str) -> str:
    return next(ln for ln in err.splitlines() if ln.startswith("error: "))


# ---------------------------------------------------------------------------------- fixtures
def tiny_config(vocab_size: int = 40):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=24,
        type_vocab_size=1,
    )


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A tiny kbioxlm training checkpoint (what ``RUN/final`` holds)."""
    from kbioxlm.pretrain.model import KnowledgeAnchoredModel

    torch.manual_seed(0)
    model = KnowledgeAnchoredModel.from_config(tiny_config(), kept_ids=list(range(0, 40, 2)))
    d = tmp_path / "run" / "final"
    model.save_pretrained(d)
    return d


PIECES = (
    ["<s>", "<pad>", "</s>", "<unk>"]
    + [f"\u2581{c}" for c in "abcdefgh"]
    + list("abcdefghijklmnopqrstuvwxyz")
    + ["<mask>", "\u2581"]
)


@pytest.fixture
def unigram_model(tmp_path) -> Path:
    """A tiny SentencePiece-Unigram tokenizer and a matching XLM-R masked-LM model in one folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import XLMRobertaForMaskedLM

    d = tmp_path / "unigram"
    d.mkdir()
    vocab = [(p, 0.0 if i < 4 else -1.0 - 0.01 * i) for i, p in enumerate(PIECES)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.save(str(d / "tokenizer.json"))
    torch.manual_seed(0)
    XLMRobertaForMaskedLM(tiny_config(len(PIECES))).save_pretrained(d)
    (tmp_path / "kept.json").write_text(json.dumps({"kept_ids": [0, 1, 2, 3, 4, 5, 12]}), encoding="utf-8")
    return d


def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    (v / "important").mkdir(parents=True)
    (v / "important" / "results.md").write_text("x\n", encoding="utf-8")
    return v


# ------------------------------------------------------------------ 1. no data loss in --out
def test_export_refuses_a_folder_it_did_not_write(tmp_path, checkpoint, capsys):
    v = victim(tmp_path)
    rc, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", v)
    assert rc == 2 and str(v) in error_line(err) and "refusing" in err
    assert (v / "important" / "results.md").read_text() == "x\n"
    rc, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", v, "--overwrite")
    assert rc == 2 and (v / "important" / "results.md").read_text() == "x\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_export_overwrite_replaces_only_a_previous_export(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine
    assert run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", out)[0] == 0
    assert (out / "kbioxlm_export.json").is_file() and (out / "model.safetensors").is_file()
    rc, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", out)
    assert rc == 2 and "--overwrite" in err
    assert run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", out, "--overwrite")[0] == 0
    (out / "notes.md").write_text("mine\n", encoding="utf-8")  # the user added a file: never replaced
    rc, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", out, "--overwrite")
    assert rc == 2 and "notes.md" in err and (out / "notes.md").read_text() == "mine\n"
    f = tmp_path / "a-file"
    f.write_text("keep\n")
    rc, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", f, "--overwrite")
    assert rc == 2 and "not a folder" in err and f.read_text() == "keep\n"


def test_vocab_trim_refuses_a_folder_it_did_not_write(tmp_path, unigram_model, capsys):
    v = victim(tmp_path)
    argv = [
        "vocab",
        "trim",
        "--model",
        unigram_model,
        "--tokenizer",
        unigram_model,
        "--kept",
        tmp_path / "kept.json",
        "--charsets",
        "none",
    ]
    rc, err = run_cli(capsys, *argv, "--out", v)
    assert rc == 2 and "refusing" in err and (v / "important" / "results.md").read_text() == "x\n"
    out = tmp_path / "trimmed"
    assert run_cli(capsys, *argv, "--out", out)[0] == 0
    assert run_cli(capsys, *argv, "--out", out)[0] == 2
    assert run_cli(capsys, *argv, "--out", out, "--overwrite")[0] == 0
    assert json.loads((out / "kbioxlm_trim.json").read_text())["trimmed_vocab_size"] < len(PIECES)


# ------------------------------------------------------------------ 4. non-UTF-8 input: file:line, exit 2
def conll_with_latin1(path: Path, bad_line: int, n_lines: int = 60) -> Path:
    """A CoNLL file whose line ``bad_line`` holds one Latin-1 byte (é), long enough for chunked reads."""
    lines = [b"-DOCSTART-\t1\n", b"\n"]
    i = 0
    while len(lines) < n_lines:
        i += 1
        lines.append(b"Aspirin\tB-Drug\n" if i % 2 else b"x" * 400 + b"\tO\n")
    lines[bad_line - 1] = b"caf\xe9\tO\n"
    path.write_bytes(b"".join(lines))
    return path


def jsonl_with_latin1(path: Path, bad_line: int, n_lines: int = 60) -> Path:
    rows = [
        json.dumps({"id": str(i), "lang": "en", "text": "aspirin " * 40, "label": i % 2}).encode() + b"\n"
        for i in range(n_lines)
    ]
    rows[bad_line - 1] = rows[bad_line - 1].replace(b"aspirin", b"aspir\xedn", 1)
    path.write_bytes(b"".join(rows))
    return path


@pytest.mark.parametrize("bad_line", [31, 40])
def test_jsonl_reader_reports_the_line_of_a_bad_byte(tmp_path, bad_line):
    from kbioxlm.errors import KbioxlmError
    from kbioxlm.io import iter_jsonl

    p = jsonl_with_latin1(tmp_path / "a.jsonl", bad_line)
    with pytest.raises(KbioxlmError, match=rf"a\.jsonl:{bad_line}: not valid UTF-8"):
        list(iter_jsonl(p))


def test_finetune_on_latin1_conll_gives_file_and_line(tmp_path, capsys):
    bad = conll_with_latin1(tmp_path / "train.txt", 37)
    rc, err = run_cli(
        capsys,
        "finetune",
        "--task",
        "ner",
        "--model",
        tmp_path / "no-model",
        "--train",
        bad,
        "--test",
        bad,
        "--out",
        tmp_path / "out",
    )
    assert rc == 2 and f"{bad}:37: not valid UTF-8" in err
    bad = jsonl_with_latin1(tmp_path / "train.json", 40)
    rc, err = run_cli(
        capsys,
        "finetune",
        "--task",
        "re",
        "--model",
        tmp_path / "no-model",
        "--train",
        bad,
        "--test",
        bad,
        "--out",
        tmp_path / "out",
    )
    assert rc == 2 and f"{bad}:40: not valid UTF-8" in err
    assert not (tmp_path / "out").exists()


def test_translate_and_llm_eval_on_latin1_conll_leave_nothing(tmp_path, capsys):
    bad = conll_with_latin1(tmp_path / "test.txt", 12)
    out = tmp_path / "tr" / "zh.txt"
    rc, err = run_cli(
        capsys,
        "translate",
        "--task",
        "ner",
        "--input",
        bad,
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
        out,
        "--review",
        tmp_path / "tr" / "review.jsonl",
        "--no-progress",
    )
    assert rc == 2 and f"{bad}:12: not valid UTF-8" in err
    assert not (tmp_path / "tr").exists()  # no cache, no outputs
    rc, err = run_cli(
        capsys,
        "llm-eval",
        "--task",
        "ner",
        "--test",
        bad,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--out",
        tmp_path / "llm",
        "--no-progress",
    )
    assert rc == 2 and f"{bad}:12: not valid UTF-8" in err
    assert not (tmp_path / "llm").exists()


# ------------------------------------------------------------------ 9. permissions follow the umask
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_outputs_honour_the_umask(tmp_path, umask, checkpoint, capsys):
    from kbioxlm.io import write_json, write_jsonl

    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_jsonl(tmp_path / "b.jsonl", [{"x": 1}])
        assert run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", tmp_path / "exp")[0] == 0
    finally:
        os.umask(old)
    for f in (
        tmp_path / "a.json",
        tmp_path / "b.jsonl",
        tmp_path / "exp" / "kbioxlm_export.json",
        tmp_path / "exp" / "model.safetensors",
    ):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
    assert stat.S_IMODE((tmp_path / "exp").stat().st_mode) == 0o777 & ~umask


# ------------------------------------------------------------------ 5. labels outside the task's label set
def test_re_label_outside_0_1_is_refused_with_file_and_line(tmp_path, capsys):
    rows = [{"id": str(i), "sentence": f"@GENE$ and @DISEASE$ {i}", "label": str(i % 2)} for i in range(6)]
    rows[4]["label"] = "2"
    train = tmp_path / "train.json"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rc, err = run_cli(
        capsys,
        "finetune",
        "--task",
        "re",
        "--model",
        tmp_path / "no-model",
        "--train",
        train,
        "--test",
        train,
        "--out",
        tmp_path / "out",
    )
    assert rc == 2 and f"{train}:5:" in err and "'2'" in err

    from kbioxlm.errors import KbioxlmError
    from kbioxlm.tasks.finetune import FinetuneConfig, run_finetune

    recs = [{"id": str(i), "lang": "en", "text": "x y", "label": i % 3} for i in range(6)]  # record lists too
    with pytest.raises(KbioxlmError, match="0 or 1"):
        run_finetune(FinetuneConfig(task="re", model=str(tmp_path / "no-model"), train=recs, progress=False))


NER_TRAIN = "-DOCSTART-\t1\n\nAspirin\tB-Drug\ncaused\tO\nrash\tB-ADE\n\n-DOCSTART-\t2\n\nNo\tO\nrash\tB-ADE\n"
NER_TEST = "-DOCSTART-\t7\n\nAspirin\tB-Drug\n\n-DOCSTART-\t8\n\nin\tO\nBoston\tB-Foo\n"


def test_ner_entity_type_unseen_in_training_is_an_error(tmp_path, capsys):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text(NER_TRAIN, encoding="utf-8")
    test.write_text(NER_TEST, encoding="utf-8")
    rc, err = run_cli(
        capsys,
        "finetune",
        "--task",
        "ner",
        "--model",
        tmp_path / "no-model",
        "--train",
        train,
        "--test",
        test,
        "--out",
        tmp_path / "out",
    )
    assert rc == 2 and f"{test}:8:" in err and "'Foo'" in err and "--allow-unseen-types" in err
    assert not (tmp_path / "out").exists()
    # asked for: the check lets it through (the run then fails on the missing model, later)
    rc, err = run_cli(
        capsys,
        "finetune",
        "--task",
        "ner",
        "--model",
        tmp_path / "no-model",
        "--train",
        train,
        "--test",
        test,
        "--out",
        tmp_path / "out",
        "--allow-unseen-types",
    )
    assert rc == 2 and "Foo" not in error_line(err)


# ------------------------------------------------------------------ 3. truncated OBO files
MINI_OBO = """format-version: 1.2
ontology: mini

[Term]
id: MP:0000001
name: All

[Term]
id: MP:0000002
name: Abnormality of the heart
is_a: MP:0000001 ! All

[Term]
id: MP:0000003
name: Tachycardia
is_a: MP:0000002 ! Abnormality of the heart
"""


def test_obo_cut_mid_stanza_is_refused_with_file_and_line(tmp_path, capsys):
    obo = tmp_path / "cut.obo"
    kb = tmp_path / "kb.sqlite"
    obo.write_text(MINI_OBO[: MINI_OBO.rindex("MP:0000002") + 6], encoding="utf-8")  # "is_a: MP:0000" …
    rc, err = run_cli(capsys, "kb", "import", "obo", "--obo", obo, "--kb", kb)
    assert rc == 2 and f"{obo}:16: truncated" in err and not kb.exists()
    obo.write_text(MINI_OBO + "\n[Ter", encoding="utf-8")
    rc, err = run_cli(capsys, "kb", "import", "obo", "--obo", obo, "--kb", kb)
    assert rc == 2 and f"{obo}:18:" in err and not kb.exists()
    obo.write_text(MINI_OBO + "\n[Ter\n", encoding="utf-8")
    rc, err = run_cli(capsys, "kb", "import", "obo", "--obo", obo, "--kb", kb)
    assert rc == 2 and f"{obo}:18: malformed stanza header" in err
    obo.write_text(MINI_OBO, encoding="utf-8")  # complete (ends without a blank line, as hand-written files do)
    assert run_cli(capsys, "kb", "import", "obo", "--obo", obo, "--kb", kb)[0] == 0


def test_obo_warns_when_most_translations_match_no_concept(tmp_path, capsys, caplog):
    obo = tmp_path / "mini.obo"
    obo.write_text(MINI_OBO, encoding="utf-8")
    bab = tmp_path / "zh.babelon.tsv"
    rows = ["subject_id\tpredicate_id\ttranslation_language\ttranslation_value\ttranslation_status"]
    rows += [f"MP:00001{i:02d}\trdfs:label\tzh\t名{i}\tOFFICIAL" for i in range(5)]  # ids past the (cut) file
    rows += ["MP:0000002\trdfs:label\tzh\t心脏异常\tOFFICIAL"]
    bab.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert (
            run_cli(capsys, "kb", "import", "obo", "--obo", obo, "--translations", bab, "--kb", tmp_path / "kb.sqlite")[
                0
            ]
            == 0
        )
    assert any("5 of 6 translations match no concept" in r.getMessage() for r in caplog.records)


@pytest.mark.shared
def test_real_hpo_cut_at_5_mb_is_refused(tmp_path, capsys):
    from conftest import shared_path

    cut = tmp_path / "hp-5mb.obo"
    cut.write_bytes(shared_path("data", "kb", "hpo", "hp.obo").read_bytes()[:5_000_000])
    rc, err = run_cli(capsys, "kb", "import", "obo", "--obo", cut, "--kb", tmp_path / "kb.sqlite")
    n_lines = cut.read_bytes().count(b"\n") + 1
    assert rc == 2 and f"{cut}:{n_lines}: truncated OBO file" in err


# ------------------------------------------------------------------ 6. one line naming the path, not a traceback
def read_only_dir(tmp_path: Path) -> Path:
    """A folder this process cannot write in (chmod 555; root ignores that, so fall back to /sys)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    for folder in (ro, Path("/sys")):
        try:
            (folder / ".probe").mkdir()
        except OSError:
            return folder
        (folder / ".probe").rmdir()
    pytest.skip("no unwritable folder available to this user")


@pytest.fixture
def bad_outs(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x\n")
    a_dir = tmp_path / "a-dir"
    (a_dir / "inside").mkdir(parents=True)
    return {"under a file": a_file / "out", "a folder": a_dir, "read-only": read_only_dir(tmp_path) / "out"}


def tiny_kb(tmp_path: Path, capsys) -> Path:
    concepts = tmp_path / "c.tsv"
    concepts.write_text("C1\tDrug\ten\taspirin\t1\nC1\tDrug\tzh\t阿司匹林\t1\n", encoding="utf-8")
    kb = tmp_path / "kb.sqlite"
    assert run_cli(capsys, "kb", "import", "tsv", "--concepts", concepts, "--kb", kb)[0] == 0
    return kb


def test_bad_out_paths_of_corpus_builders_and_kb_import(tmp_path, bad_outs, capsys):
    kb = tiny_kb(tmp_path, capsys)
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "1", "lang": "en", "text": "aspirin helps"}\n', encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"sent1": "Aspirin helps. It works.", "sent2": "阿司匹林有效。它起作用。"}\n', encoding="utf-8")
    for what, out in bad_outs.items():
        for argv in (
            ["corpus", "entity", "--kb", kb, "--input", docs, "--lang", "en", "--target-lang", "zh", "--out", out],
            ["corpus", "fact", "--kb", kb, "--input", docs, "--lang", "en", "--target-lang", "zh", "--out", out],
            ["corpus", "passage", "--pairs", pairs, "--out", out],
            ["kb", "import", "tsv", "--concepts", tmp_path / "c.tsv", "--kb", out],
        ):
            rc, err = run_cli(capsys, *argv)
            assert rc == 2 and str(out) in error_line(err), (what, argv[:2], err)
            assert "Traceback" not in err


def test_bad_output_dir_of_pretrain(tmp_path, bad_outs, capsys):
    cfg = tmp_path / "pt.yaml"
    for what, out in bad_outs.items():
        if what == "a folder":
            continue  # output_dir is a folder
        cfg.write_text(f"model: m\ntrain_files: {tmp_path / 'x.jsonl'}\noutput_dir: {out}\n", encoding="utf-8")
        rc, err = run_cli(capsys, "pretrain", "--config", cfg)
        assert rc == 2 and str(out) in error_line(err), (what, err)
    cfg.write_text(
        f"model: m\ntrain_files: {tmp_path / 'x.jsonl'}\noutput_dir: {tmp_path / 'a-file'}\n", encoding="utf-8"
    )
    rc, err = run_cli(capsys, "pretrain", "--config", cfg)
    assert rc == 2 and "is not a folder" in err


def test_export_from_truncated_weights_is_one_line(tmp_path, checkpoint, capsys):
    w = checkpoint / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    rc, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", tmp_path / "exp")
    assert rc == 2 and str(w) in error_line(err) and not (tmp_path / "exp").exists()


def test_benchmark_dry_run_validates_types_and_a_failed_cell_leaves_no_partial(tmp_path, capsys):
    import yaml

    from kbioxlm.errors import KbioxlmError
    from kbioxlm.tasks import benchmark as B
    from test_benchmark import write_synthetic_sets

    tasks = write_synthetic_sets(tmp_path / "data")[1:2]  # the RE set
    raw = {
        "models": [{"name": "tiny", "path": "m"}],
        "tasks": tasks,
        "directions": ["en-zh"],
        "seeds": [1],
        "finetune": {"epochs": "abc"},
    }
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    rc, err = run_cli(capsys, "benchmark", "--config", cfg, "--out", tmp_path / "o", "--dry-run")
    assert rc == 2 and "finetune.epochs" in err and "'abc'" in err and str(cfg) in err
    for bad in ({"epochs": 1.5}, {"save_model": "yes"}, {"head_lr": "fast"}, {"no_such_knob": 1}):
        raw["finetune"] = bad
        cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        with pytest.raises(KbioxlmError, match="finetune"):
            B.load_benchmark_config(cfg)
    raw["finetune"] = {"epochs": 1, "lr": "5e-5", "early_stopping_patience": None}
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    def failing(kwargs):
        raise TypeError("boom")

    with pytest.raises(TypeError):
        B.run_benchmark(B.load_benchmark_config(cfg), tmp_path / "o", run_fn=failing, progress=False)
    assert not [p for p in (tmp_path / "o").rglob("*.partial")]


# ------------------------------------------------------------------ 7. a --model that does not exist
def test_nonexistent_model_says_so(tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text(NER_TRAIN, encoding="utf-8")
    missing = tmp_path / "models" / "no-such-model"
    runs = [
        ["finetune", "--task", "ner", "--model", missing, "--train", train, "--test", train, "--out", tmp_path / "o"],
        [
            "finetune",
            "--task",
            "ner",
            "--model",
            "./no/such/model",
            "--train",
            train,
            "--test",
            train,
            "--out",
            tmp_path / "o",
        ],
        [
            "translate",
            "--task",
            "ner",
            "--input",
            train,
            "--source-lang",
            "en",
            "--target-lang",
            "zh",
            "--backend",
            "hf",
            "--model",
            missing,
            "--out",
            tmp_path / "t.txt",
            "--review",
            tmp_path / "r.jsonl",
            "--no-progress",
        ],
        [
            "vocab",
            "trim",
            "--model",
            missing,
            "--tokenizer",
            tmp_path,
            "--kept",
            tmp_path / "k.json",
            "--out",
            tmp_path / "v",
        ],
        ["vocab", "reduce", "--tokenizer", missing, "--corpus", train, "--out", tmp_path / "k.json"],
    ]
    cfg = tmp_path / "pt.yaml"
    cfg.write_text(
        f"model: {missing}\ntrain_files: {tmp_path / 'x.jsonl'}\noutput_dir: {tmp_path / 'run'}\n", encoding="utf-8"
    )
    runs.append(["pretrain", "--config", cfg])
    for argv in runs:
        rc, err = run_cli(capsys, *argv)
        line = error_line(err)
        assert rc == 2 and "does not exist" in line and "Repo id" not in line, (argv[0], err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ 2. a failing translation backend
def _translate_argv(tmp_path: Path, src: Path, base_url: str) -> list:
    return [
        "translate",
        "--task",
        "ner",
        "--input",
        src,
        "--source-lang",
        "en",
        "--target-lang",
        "zh",
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--model",
        "m",
        "--out",
        tmp_path / "zh.txt",
        "--review",
        tmp_path / "review.jsonl",
        "--max-retries",
        "0",
        "--no-progress",
    ]


def _always_500(body):
    raise RuntimeError("backend down")  # the stub answers HTTP 500


def test_translate_fails_when_the_backend_always_fails(tmp_path, capsys):
    import socket

    from openai_stub import OpenAIStub

    src = tmp_path / "en.txt"
    src.write_text(NER_TRAIN, encoding="utf-8")
    with OpenAIStub(_always_500) as stub:
        rc, err = run_cli(capsys, *_translate_argv(tmp_path, src, stub.base_url))
        rc2, err2 = run_cli(
            capsys,
            "llm-eval",
            "--task",
            "ner",
            "--test",
            src,
            "--base-url",
            stub.base_url,
            "--model",
            "m",
            "--out",
            tmp_path / "llm",
            "--max-retries",
            "0",
            "--no-progress",
        )
    assert rc2 == 2 and "every request failed" in error_line(err2) and not (tmp_path / "llm").exists()
    line = error_line(err)
    assert rc == 2 and "0 of 2 items accepted" in line and "HTTP 500" in line
    assert not (tmp_path / "zh.txt").exists() and (tmp_path / "review.jsonl").is_file()
    assert not (tmp_path / "zh.txt.cache.sqlite").exists()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, err = run_cli(capsys, *_translate_argv(tmp_path, src, f"http://127.0.0.1:{port}/v1"))
    assert rc == 2 and "0 of 2 items accepted" in error_line(err) and "ConnectError" in error_line(err)
    assert not (tmp_path / "zh.txt").exists()


def test_translate_min_accepted_and_a_working_backend(tmp_path, capsys):
    from openai_stub import OpenAIStub

    src = tmp_path / "en.txt"
    src.write_text(NER_TRAIN, encoding="utf-8")
    answers = {"Aspirin": "<1>阿司匹林</1>引起<2>皮疹</2>。", "No": "无<1>皮疹</1>。"}

    def half(body):
        from openai_stub import last_user

        text = last_user(body)
        if "Aspirin" in text:
            return answers["Aspirin"]
        raise RuntimeError("down")

    with OpenAIStub(half) as stub:
        assert run_cli(capsys, *_translate_argv(tmp_path, src, stub.base_url))[0] == 0  # 1 of 2 >= 0.1
        rc, err = run_cli(capsys, *_translate_argv(tmp_path, src, stub.base_url), "--min-accepted", "0.9")
        assert rc == 2 and "1 of 2 items accepted (--min-accepted 0.9)" in error_line(err)
    with OpenAIStub(lambda b: next(v for k, v in answers.items() if k in b["messages"][-1]["content"])) as stub:
        assert run_cli(capsys, *_translate_argv(tmp_path, src, stub.base_url))[0] == 0
    assert (tmp_path / "zh.txt").read_text(encoding="utf-8").count("-DOCSTART-") == 2


def test_truncated_200_body_is_retried_and_reported(caplog):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from kbioxlm.chat.client import ChatClient

    full = json.dumps({"choices": [{"message": {"role": "assistant", "content": "好"}}]}).encode()
    sent = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = full if sent else full[: len(full) // 2]  # the first answer is cut off
            sent.append(len(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ChatClient(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="m", max_retries=2, backoff=0.0
        )
        with caplog.at_level("WARNING"):
            assert client.chat([{"role": "user", "content": "x"}]) == "好"
        assert len(sent) == 2 and any("truncated" in r.getMessage() for r in caplog.records)
    finally:
        server.shutdown()


def test_bad_out_of_finetune_and_llm_eval_fails_before_any_work(tmp_path, bad_outs, capsys):
    train = tmp_path / "train.txt"
    train.write_text(NER_TRAIN, encoding="utf-8")
    for what, out in bad_outs.items():
        if what == "a folder":
            continue  # --out is a folder for these
        rc, err = run_cli(
            capsys,
            "finetune",
            "--task",
            "ner",
            "--model",
            tmp_path / "m",
            "--train",
            train,
            "--test",
            train,
            "--out",
            out,
        )
        assert rc == 2 and str(out) in error_line(err), (what, err)
        rc, err = run_cli(
            capsys,
            "llm-eval",
            "--task",
            "ner",
            "--test",
            train,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--out",
            out,
        )
        assert rc == 2 and str(out) in error_line(err), (what, err)
