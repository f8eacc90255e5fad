"""``kbioxlm pipeline``: the whole chain on tiny inputs, skipping finished steps, redoing changed ones,
dry runs, variables, and the raw-document conversion."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from kbioxlm.cli import build_parser, main
from kbioxlm.errors import KbioxlmError
from kbioxlm.pipeline import sources
from kbioxlm.pipeline.config import load_pipeline_config
from kbioxlm.pipeline.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]


def _has_command(name: str) -> bool:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return name in sub.choices  # type: ignore[union-attr]


HAS_CORPUS = _has_command("corpus")
RAN = re.compile(r"^\[\d+/\d+\] (\S+): .*  \((.*)\)$", re.M)  # header of a step that runs (with its reason)


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Demo data, a tokenizer trained on it and a seeded 2-layer model: everything offline."""
    from kbioxlm.demo.data import demo_texts, write_demo_data
    from kbioxlm.demo.experiment import build_tiny_model, train_demo_tokenizer

    root = tmp_path_factory.mktemp("pipeline-inputs")
    data = write_demo_data(root / "data", seed=3)
    tok = train_demo_tokenizer(demo_texts(data), root / "tokenizer", vocab_size=1200)
    model = build_tiny_model(tok, root / "base-model", seed=3)
    # two line-aligned files (ParaMed-like, Moses-tokenised) from the demo articles
    arts = [json.loads(line) for line in data["pairs"].read_text(encoding="utf-8").splitlines()]
    (root / "lines.en").write_text("".join(a["sent1"].replace(",", " ,") + "\n" for a in arts[:6]), encoding="utf-8")
    (root / "lines.zh").write_text("".join(" ".join(a["sent2"]) + "\n" for a in arts[:6]), encoding="utf-8")
    pretrain = root / "pretrain.yaml"
    pretrain.write_text(
        yaml.safe_dump(
            {
                "max_steps": 4,
                "per_device_train_batch_size": 4,
                "learning_rate": 1e-3,
                "warmup_steps": 1,
                "max_length": 48,
                "eval_fraction": 0.1,
                "eval_steps": 2,
                "save_steps": 2,
                "logging_steps": 1,
                "mixed_precision": "no",
                "report_to": "none",
                "num_threads": 2,
                "mix": {"mlm": 0.5, "entity": 0.1667, "fact": 0.1667, "passage": 0.1667},
            }
        ),
        encoding="utf-8",
    )
    bench = root / "bench.yaml"
    bench.write_text(
        yaml.safe_dump(
            {
                "models": [{"name": "placeholder", "path": "set-by-the-pipeline"}],
                "tasks": [
                    {
                        "name": "demo-ner",
                        "type": "ner",
                        "unit": "sentence",
                        "files": {
                            lang: {s: str(data[f"ner_{s}_{lang}"]) for s in ("train", "dev", "test")}
                            for lang in ("en", "zh")
                        },
                    }
                ],
                "directions": ["en-zh"],
                "settings": ["zero-shot"],
                "seeds": [1],
                "finetune": {
                    "epochs": 1,
                    "lr": 1.0e-3,
                    "batch_size": 16,
                    "max_length": 48,
                    "num_threads": 2,
                    "progress": False,
                },
                "max_train_examples": 48,
                "max_dev_examples": 16,
                "max_test_examples": 24,
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    return {"root": root, "tokenizer": tok, "model": model, "bench": bench, "pretrain": pretrain, **data}


def _write_config(tiny: dict[str, Path], path: Path, steps: int = 4) -> Path:
    levels = ["entity", "fact", "passage"] if HAS_CORPUS else []
    train = ["entity", "fact", "passage", "mono"] if HAS_CORPUS else ["mono"]
    cfg = {
        "name": "tiny",
        "out": "${inputs}/../run",  # relative to vars: exercises substitution
        "seed": 5,
        "vars": {"inputs": str(tiny["root"])},
        "base_model": {"name": "tiny-base", "path": str(tiny["model"]), "tokenizer": str(tiny["tokenizer"])},
        "kb": {"tsv": [{"concepts": "${inputs}/data/kb_concepts.tsv", "relations": "${inputs}/data/kb_relations.tsv"}]},
        "documents": {
            "en": ["${inputs}/data/docs_en.jsonl"],
            "zh": [{"path": "${inputs}/data/docs_zh.jsonl", "format": "jsonl"}],
        },
        "pairs": [
            "${inputs}/data/article_pairs.jsonl",
            {"en": "${inputs}/lines.en", "zh": "${inputs}/lines.zh", "per_article": 2},
        ],
        "corpus": {"levels": levels},
        "vocab": {"args": ["--min-count", "1"]},
        "pretrain": [
            {"name": "kb", "config": str(tiny["pretrain"]), "train": train, "overrides": {"max_steps": steps}}
        ],
        "benchmark": {"config": str(tiny["bench"]), "names": {"kb": "tiny-kbioxlm"}},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _markers(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (out / ".pipeline").glob("*.json")}


def test_pipeline_runs_every_step_then_skips_them(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All steps run through the CLI; a second run skips all; a changed pretraining setting redoes
    exactly pretraining, export, that model's benchmark and the report (not the KB or the base model)."""
    cfg_path = _write_config(tiny, tmp_path / "pipe.yaml")
    out = tmp_path / "out"
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    steps = [s.name for s in build_plan(load_pipeline_config(cfg_path, out=str(out)))]
    markers = _markers(out)
    assert set(markers) == set(steps)
    assert all(m["status"] == "done" for m in markers.values())
    # the printed commands are the documented CLI, e.g. the KB import and the pretraining run
    assert f"$ kbioxlm kb import tsv --concepts {tiny['root']}/data/kb_concepts.tsv" in first
    assert "$ kbioxlm pretrain --config" in first and "resume_from_checkpoint=auto" in first
    if HAS_CORPUS:
        assert "$ kbioxlm corpus fact --kb" in first and "corpus.entity.en+zh" in steps
        assert "$ kbioxlm corpus passage --parallel-a" in first
    stats = json.loads((out / "kb" / "stats.json").read_text(encoding="utf-8"))
    assert stats["concepts"] > 0 and set(stats["names"]) == {"en", "zh"}
    docs = [json.loads(x) for x in (out / "docs" / "zh.jsonl").read_text(encoding="utf-8").splitlines()]
    assert docs and all(d["lang"] == "zh" for d in docs)
    assert (out / "models" / "kb" / "config.json").is_file()
    report = (out / "benchmark" / "results.md").read_text(encoding="utf-8")
    assert "tiny-base" in report and "tiny-kbioxlm" in report
    merged = [json.loads(x) for x in (out / "benchmark" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["model"] for r in merged) == ["tiny-base", "tiny-kbioxlm"]

    # second invocation: nothing runs
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and ".pipeline" not in p.parts}
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert second.count("skipped (done") == len(steps)
    assert "$ kbioxlm" not in second
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # a changed pretraining setting: redo pretraining and what depends on it, nothing upstream
    _write_config(tiny, cfg_path, steps=3)
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out)]) == 0
    third = capsys.readouterr().out
    ran = dict(RAN.findall(third))
    # the report re-runs only when the re-benchmarked results differ (a tiny model may score the same)
    assert (
        {"pretrain.kb", "export.kb", "benchmark.kb"}
        <= set(ran)
        <= {"pretrain.kb", "export.kb", "benchmark.kb", "benchmark.report"}
    ), ran
    assert not any(step.startswith(("kb.", "docs.", "corpus.")) for step in ran)
    assert ran["pretrain.kb"] == "settings or inputs changed"
    assert json.loads((out / "pretrain" / "kb" / "kbioxlm_config.json").read_text(encoding="utf-8"))["global_step"] == 3


def test_dry_run_prints_commands_and_writes_nothing(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = _write_config(tiny, tmp_path / "pipe.yaml")
    out = tmp_path / "dry"
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "$ kbioxlm vocab reduce --tokenizer" in text
    assert f"$ kbioxlm pipeline --config {cfg_path} --out {out} --only docs.en" in text
    assert "would-run" in text.splitlines()[-1]


def test_only_runs_selected_steps_and_rejects_unknown(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = _write_config(tiny, tmp_path / "pipe.yaml")
    out = tmp_path / "only"
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out), "--only", "kb,docs.en"]) == 0
    capsys.readouterr()
    assert set(_markers(out)) == {"kb.tsv.kb_concepts", "kb.stats", "docs.en"}
    # --force redoes a finished step
    assert (
        main(["pipeline", "--config", str(cfg_path), "--out", str(out), "--only", "kb.stats", "--force", "kb.stats"])
        == 0
    )
    assert "(forced)" in capsys.readouterr().out
    assert json.loads((out / "kb" / "stats.json").read_text(encoding="utf-8"))["relations"] > 0
    # a changed KB recipe rebuilds the KB from an empty file (no stale rows of the old entry)
    raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    del raw["kb"]["tsv"][0]["relations"]
    cfg_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out), "--only", "kb"]) == 0
    assert "settings or inputs changed" in capsys.readouterr().out
    assert json.loads((out / "kb" / "stats.json").read_text(encoding="utf-8"))["relations"] == 0
    # a step whose input comes from a step left out of --only is refused up front
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out), "--only", "vocab"]) == 2
    assert "which is not selected: add it to --only" in capsys.readouterr().err
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out), "--only", "nosuch"]) == 2
    assert "no step matches nosuch" in capsys.readouterr().err


def test_seeds_repeat_the_pipeline_side_by_side(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--seeds`` runs the whole config once per seed into OUT/seed-S, two at a time; each run is the
    one ``--seed S`` makes (same outputs), its commands are in its own pipeline.log."""
    cfg_path = _write_config(tiny, tmp_path / "pipe.yaml")
    out = tmp_path / "rep"
    argv = ["pipeline", "--config", str(cfg_path), "--only", "kb,docs,corpus"]
    assert main([*argv, "--out", str(out), "--seeds", "5,6", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "seed 5: done" in printed and "seed 6: done" in printed and "$ kbioxlm" not in printed
    for seed in (5, 6):
        log = (out / f"seed-{seed}" / "pipeline.log").read_text(encoding="utf-8")
        assert f"$ kbioxlm kb import tsv --concepts {tiny['root']}/data/kb_concepts.tsv" in log
        assert _markers(out / f"seed-{seed}") and all(
            m["status"] == "done" for m in _markers(out / f"seed-{seed}").values()
        )
    assert main([*argv, "--out", str(tmp_path / "one"), "--seed", "6"]) == 0
    capsys.readouterr()
    made = sorted(p.relative_to(out / "seed-6") for p in (out / "seed-6" / "corpus").rglob("*.jsonl"))
    assert made and all((out / "seed-6" / p).read_bytes() == (tmp_path / "one" / p).read_bytes() for p in made)
    if HAS_CORPUS:  # the seed reaches the corpus builders (here: the passage level's random pairs)
        assert any((out / "seed-5" / p).read_bytes() != (out / "seed-6" / p).read_bytes() for p in made)
    # runs that would share a folder, and seeds that are not integers, are one-line errors
    raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg_path.write_text(yaml.safe_dump({**raw, "out": str(tmp_path / "fixed")}), encoding="utf-8")
    assert main(["pipeline", "--config", str(cfg_path), "--seeds", "5,6"]) == 2
    assert "would share the output folder" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--seeds", "5,x"]) == 2
    assert "--seeds: expected integers" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--jobs", "2"]) == 2
    assert "give --seeds" in capsys.readouterr().err


def test_missing_input_fails_before_any_step(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = _write_config(tiny, tmp_path / "pipe.yaml")
    raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    raw["documents"]["en"] = ["${inputs}/data/no-such-file.json"]
    cfg_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "missing"
    assert main(["pipeline", "--config", str(cfg_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing input(s)" in err and "no-such-file.json (for docs.en)" in err
    assert not (out / ".pipeline").exists()


# ------------------------------------------------------------------------------------ config
def test_variables_shared_default_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("out: ${shared}/run-${seed}\nseed: 7\nvars: {a: '${out}/x'}\nbase_model: '${a}/m'\n", encoding="utf-8")
    monkeypatch.delenv("KBIOXLM_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load_pipeline_config(p)  # no project above the config: ../shared from the current directory
    shared = tmp_path.parent / "shared"
    assert cfg.out == shared / "run-7" and cfg.base_model["path"] == str(shared / "run-7/x/m")
    monkeypatch.setenv("KBIOXLM_SHARED", "/data/sh")
    assert load_pipeline_config(p).out == Path("/data/sh/run-7")
    assert load_pipeline_config(p, shared="rel").out == tmp_path / "rel" / "run-7"  # --shared: from the cwd
    p.write_text("out: o\nbase_model: ${nosuch}/m\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"unknown variable \$\{nosuch\}"):
        load_pipeline_config(p)
    p.write_text("out: o\nbase_model: m\nkb: {obo: [{obo: x, translation: y}]}\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"kb.obo\[0\]: unknown key\(s\) translation"):
        load_pipeline_config(p)
    p.write_text("out: o\nbase_model: m\nkb: {obo: [x: 1\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"c.yaml:\d+: invalid YAML"):
        load_pipeline_config(p)


def test_seed_override_typed_seed_and_given_holdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--seed`` replaces the config's seed (``${seed}`` alone is that integer, inside text it is
    text); ``holdout.concepts`` is a given list: no ``kb.split`` step, the file excludes and probes."""
    (tmp_path / "held.txt").write_text("C1\n", encoding="utf-8")
    (tmp_path / "kb.tsv").write_text("id\tlang\tname\nC1\ten\tx\n", encoding="utf-8")
    (tmp_path / "bench.yaml").write_text("models: [m]\ntasks: [ade]\n", encoding="utf-8")
    p = tmp_path / "c.yaml"
    p.write_text(
        "out: run-${seed}\nseed: 7\nbase_model: m\nkb: {tsv: [{concepts: kb.tsv}]}\n"
        "holdout: {concepts: held.txt}\nprobe: true\n"
        "benchmark: {config: bench.yaml, overrides: {seeds: ['${seed}'], dir: 'b-${seed}'}}\n",
        encoding="utf-8",
    )
    cfg = load_pipeline_config(p, seed=11)
    assert cfg.seed == 11 and cfg.out == tmp_path / "run-11"
    assert cfg.benchmark is not None and cfg.benchmark["overrides"] == {"seeds": [11], "dir": "b-11"}
    steps = {s.name: s for s in build_plan(cfg)}
    assert "kb.split" not in steps and cfg.holdout == {"concepts": str(tmp_path / "held.txt")}
    probe = steps["probe.base"]
    assert probe.argv is not None and probe.argv[probe.argv.index("--concepts") + 1] == str(tmp_path / "held.txt")
    assert tmp_path / "held.txt" in probe.inputs and probe.argv[probe.argv.index("--seed") + 1] == "11"
    assert load_pipeline_config(p).seed == 7
    # the command line: --seed reaches the steps' commands
    assert main(["pipeline", "--config", str(p), "--seed", "11", "--dry-run"]) == 0
    assert f"$ kbioxlm probe --model m --kb {tmp_path}/run-11/kb/kb.sqlite" in capsys.readouterr().out
    p.write_text("out: o\nbase_model: m\nkb: {tsv: [{concepts: kb.tsv}]}\nholdout: {concepts: h, fraction: 0.1}\n")
    with pytest.raises(KbioxlmError, match=r"holdout.concepts is a given list; fraction only set a draw"):
        load_pipeline_config(p)


@pytest.mark.parametrize("name", ["e2e-small-cpu.yaml", "e2e-paper-gpu.yaml", "ablation-small-cpu.yaml"])
def test_shipped_configs_plan(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped configs parse and expand into the documented steps (no file needs to exist)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("KBIOXLM_SHARED", "/nonexistent/shared")
    monkeypatch.setenv("UMLS_DIR", "/nonexistent/umls")
    cfg = load_pipeline_config(ROOT / "configs" / name)
    names = [s.name for s in build_plan(cfg)]
    assert names[-1] == "benchmark.report" and "benchmark.base" in names
    assert {
        "docs.en+zh",
        "corpus.entity.en+zh",
        "corpus.fact.en-zh",
        "corpus.fact.zh-en",
        "corpus.passage.pair_data",
        "corpus.passage.nejm.dev",
    } <= set(names)
    if cfg.probe is not None and cfg.probe.get("parallel"):
        # the probe's parallel text is a forgetting check: no passage corpus may be built from it
        assert "corpus.passage.nejm.test" not in names and "probe.report" in names
    assert any(n.startswith("pretrain.") for n in names) and any(n.startswith("export.") for n in names)


# ------------------------------------------------------------------------------------ sources
def test_document_formats_are_detected_and_deduplicated(tmp_path: Path) -> None:
    pq = tmp_path / "ori_pqal.json"
    pq.write_text(
        json.dumps({"1": {"CONTEXTS": ["A b.", "C d."], "LONG_ANSWER": "E."}, "2": {"CONTEXTS": ["F."]}}),
        encoding="utf-8",
    )
    lst = tmp_path / "cmeee.json"
    lst.write_text(
        json.dumps([{"text": "头痛。", "entities": []}, {"text": "发热。"}], ensure_ascii=False), encoding="utf-8"
    )
    dia = tmp_path / "dialogue.txt"
    dia.write_text("问1,问题\n答1\n\n\n问2,问题\n答2\n\n\n问1,问题\n答1\n", encoding="utf-8")
    jl = tmp_path / "ex.json"
    jl.write_text('{"text": "头痛。"}\n{"text": "头痛。"}\n', encoding="utf-8")
    assert [sources.detect_format(p) for p in (pq, lst, dia, jl)] == ["pubmedqa", "json-list", "blocks", "jsonl"]
    out = tmp_path / "zh.jsonl"
    s = sources.build_documents([str(lst), str(dia), {"path": str(jl), "format": "jsonl"}], "zh", out)
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in recs] == ["头痛。", "发热。", "问1,问题\n答1", "问2,问题\n答2"]
    assert s["duplicates"] == 3 and recs[2]["id"] == "dialogue:0"
    s = sources.build_documents([str(pq)], "en", tmp_path / "en.jsonl", max_docs=1)
    assert s["documents"] == 1 and json.loads((tmp_path / "en.jsonl").read_text())["text"] == "A b. C d. E."
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"bad.jsonl:2: no string field 'text'"):
        sources.build_documents([str(bad)], "en", tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


# ------------------------------------------------------------------------------------ runner
def test_interrupted_step_is_resumed_and_changed_inputs_redo_dependants(tmp_path: Path) -> None:
    """Marker logic on pure-Python steps: an interrupted step resumes (its folder kept), a step whose
    input changed runs fresh (its `clean` folder removed first), an unchanged one is skipped."""
    import io

    from kbioxlm.pipeline.plan import Step
    from kbioxlm.pipeline.runner import Runner

    src, mid, work, final = tmp_path / "src.txt", tmp_path / "mid.txt", tmp_path / "work", tmp_path / "final.txt"
    src.write_text("a", encoding="utf-8")
    calls: list[str] = []
    crash = {"on": True}

    def first() -> dict:
        calls.append("first")
        mid.write_text(src.read_text(encoding="utf-8").upper(), encoding="utf-8")
        return {}

    def second() -> dict:
        calls.append("second")
        work.mkdir(exist_ok=True)
        (work / "progress").write_text("half", encoding="utf-8")
        if crash["on"]:
            raise KbioxlmError("killed")
        final.write_text(mid.read_text(encoding="utf-8") + "!", encoding="utf-8")
        return {}

    steps = [
        Step("one", "first", action=first, inputs=[src], outputs=[mid]),
        Step("two", "second", action=second, inputs=[mid], outputs=[final], clean=[work]),
    ]

    def run() -> str:
        buf = io.StringIO()
        Runner(steps, tmp_path / "out", "kbioxlm pipeline --config c.yaml", stream=buf).run(steps)
        return buf.getvalue()

    with pytest.raises(KbioxlmError, match="killed"):
        run()
    assert calls == ["first", "second"]
    crash["on"] = False
    text = run()
    assert "interrupted earlier: resuming" in text and calls == ["first", "second", "second"]
    assert final.read_text(encoding="utf-8") == "A!"
    run()
    assert calls == ["first", "second", "second"]  # all skipped
    src.write_text("b", encoding="utf-8")
    (work / "stale").write_text("x", encoding="utf-8")
    text = run()
    assert calls[-2:] == ["first", "second"] and final.read_text(encoding="utf-8") == "B!"
    assert not (work / "stale").exists()  # a fresh run cleaned the step's folder


def test_failing_stage_command_fails_its_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A step's command runs in this process as ``kbioxlm <argv>`` would (pipeline/stages.py): the
    stage's one-line error (or argparse's usage message), then the step's, exit status 2; its
    marker stays ``running``."""
    import io

    from kbioxlm.pipeline.plan import Step
    from kbioxlm.pipeline.runner import Runner

    missing = tmp_path / "none.sqlite"
    for argv, said in (
        (["kb", "stats", "--kb", str(missing)], f"error: {missing}: knowledge base not found"),
        (["kb", "stats", "--kb", str(missing), "--bogus"], "kbioxlm: error: unrecognized arguments: --bogus"),
    ):
        step = Step("kb.stats", "statistics", argv=argv, outputs=[tmp_path / "stats.json"])
        with pytest.raises(KbioxlmError, match=r"pipeline step kb.stats failed \(exit 2\); fix the cause"):
            Runner([step], tmp_path / "out", "kbioxlm pipeline", stream=io.StringIO()).run([step])
        assert said in capsys.readouterr().err
        marker = json.loads((tmp_path / "out" / ".pipeline" / "kb.stats.json").read_text(encoding="utf-8"))
        assert marker["status"] == "running"


def test_input_fingerprints_follow_content_not_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copied or re-mounted model folder (new times, same bytes) keeps its fingerprint; changed
    bytes change it. Large files' hashes are cached by (size, mtime) and survive in hashes.json."""
    from kbioxlm.pipeline import runner

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    (model / "weights.bin").write_bytes(b"a" * 4096)
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("x", encoding="utf-8")
    monkeypatch.setattr(runner, "HASH_LIMIT", 1024)  # weights.bin counts as large
    monkeypatch.setattr(runner, "_hash_cache", {})
    before = runner.path_fingerprint(model)
    for f in model.rglob("*"):
        os.utime(f, ns=(10**18, 10**18))
    assert runner.path_fingerprint(model) == before  # new times, same bytes
    (model / ".cache" / "lock").write_text("y", encoding="utf-8")
    assert runner.path_fingerprint(model) == before  # hidden files do not count
    (model / "weights.bin").write_bytes(b"b" * 4096)
    changed = runner.path_fingerprint(model)
    assert changed != before
    key = str((model / "weights.bin").resolve())
    assert runner._hash_cache[key][:2] == [4096, (model / "weights.bin").stat().st_mtime_ns]
    runner.save_hash_cache(tmp_path / "hashes.json")
    monkeypatch.setattr(runner, "_hash_cache", {})
    runner.load_hash_cache(tmp_path / "hashes.json")
    assert runner._hash_cache[key][2] == hashlib.sha256(b"b" * 4096).hexdigest()
    assert runner.path_fingerprint(model) == changed
    (tmp_path / "bad.json").write_text("[", encoding="utf-8")
    runner.load_hash_cache(tmp_path / "bad.json")  # unreadable cache: ignored, hashes recomputed
    assert runner.path_fingerprint(model) == changed
