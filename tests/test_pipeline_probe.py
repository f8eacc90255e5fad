"""``kbioxlm pipeline``: held-out concepts (``kb split``), the ``align`` corpus level, the retrieval
probe (``probe.<model>`` + ``probe.report``) and ablation arms branching off one earlier stage.

``kb split``, ``corpus align``, ``--exclude-concepts`` and ``probe`` are separate commands; these
tests check the planned command lines, inputs, outputs and order (and the dry-run output), and run
only the pipeline's own ``probe.report`` step on hand-written ``probe.json`` files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kbioxlm.cli import main
from kbioxlm.errors import KbioxlmError
from kbioxlm.pipeline.config import load_pipeline_config
from kbioxlm.pipeline.plan import Step, build_plan

ARMS = ["b", "c", "d", "e", "f", "g"]


def _config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    bench = tmp_path / "bench.yaml"
    bench.write_text(
        yaml.safe_dump({"tasks": ["ade"], "directions": ["en-zh"], "settings": ["zero-shot"], "seeds": [1, 2, 3]}),
        encoding="utf-8",
    )
    cfg: dict[str, Any] = {
        "name": "ablation",
        "out": str(tmp_path / "run"),
        "seed": 7,
        "vars": {"in": str(tmp_path / "in")},
        "base_model": {"name": "tiny-base", "path": "${in}/model", "tokenizer": "${in}/tok"},
        "kb": {"tsv": [{"concepts": "${in}/concepts.tsv"}]},
        "documents": {"en": ["${in}/en.jsonl"], "zh": ["${in}/zh.jsonl"]},
        "pairs": [{"en": "${in}/p.en", "zh": "${in}/p.zh"}],
        "corpus": {
            "levels": ["entity", "fact", "passage", "align"],
            "align_mentions": True,
            "args": {"align": ["--max-pairs", "500"]},
        },
        "vocab": {},
        "holdout": {"fraction": 0.2, "max_concepts": 50},
        "pretrain": [{"name": "warmup", "config": "pre.yaml", "model": "base", "train": ["mono"]}]
        + [
            {
                "name": arm,
                "config": "pre.yaml",
                "model": "warmup",
                "train": ["entity", "align"] if arm == "b" else ["fact"],
            }
            for arm in ARMS
        ],
        "probe": {"parallel": {"en": "${in}/probe.en", "zh": "${in}/probe.zh"}, "max_terms": 300, "max_sentences": 100},
        "benchmark": {"config": str(bench), "compare": ["base", "warmup", *ARMS]},
    }
    cfg.update(over)
    return cfg


def _load(tmp_path: Path, cfg: dict[str, Any]):  # type: ignore[no-untyped-def]
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return load_pipeline_config(path)


def _by_name(steps: list[Step]) -> dict[str, Step]:
    return {s.name: s for s in steps}


def test_holdout_align_probe_and_ablation_arms_plan(tmp_path: Path) -> None:
    cfg = _load(tmp_path, _config(tmp_path))
    steps = build_plan(cfg)
    names = [s.name for s in steps]
    by = _by_name(steps)
    out, inp = tmp_path / "run", tmp_path / "in"
    kb, heldout = out / "kb" / "kb.sqlite", out / "kb" / "heldout.txt"

    # kb.split: after the KB steps, before anything reads the KB-derived corpora
    split = by["kb.split"]
    assert split.argv == [
        "kb",
        "split",
        "--kb",
        str(kb),
        "--holdout-fraction",
        "0.2",
        "--seed",
        "7",
        "--langs",
        "en,zh",
        "--out",
        str(heldout),
        "--max-concepts",
        "50",
    ]
    assert split.inputs == [kb] and split.outputs == [heldout]
    assert names.index("kb.split") == names.index("kb.stats") + 1
    assert names.index("kb.split") < min(i for i, n in enumerate(names) if n.startswith(("docs.", "corpus.")))

    # entity/fact (and align) leave the held-out concepts out; passage steps are KB-independent
    for name in ("corpus.entity.en+zh", "corpus.fact.en-zh", "corpus.fact.zh-en"):
        st = by[name]
        i = st.argv.index("--exclude-concepts")
        assert st.argv[i + 1] == str(heldout) and heldout in st.inputs, name
    passage = by["corpus.passage.p"]
    assert "--exclude-concepts" not in passage.argv and heldout not in passage.inputs

    # the align level: KB names, weighted by the concepts the entity corpus mentions
    entity_file = out / "corpus" / "entity.en+zh.jsonl"
    align_file = out / "corpus" / "align.en-zh.jsonl"
    align = by["corpus.align.en-zh"]
    assert align.argv == [
        "corpus",
        "align",
        "--kb",
        str(kb),
        "--lang",
        "en",
        "--target-lang",
        "zh",
        "--out",
        str(align_file),
        "--seed",
        "7",
        "--exclude-concepts",
        str(heldout),
        "--entity-records",
        str(entity_file),
        "--max-pairs",
        "500",
    ]
    assert align.inputs == [kb, heldout, entity_file] and align.outputs == [align_file]
    assert names.index("corpus.entity.en+zh") < names.index("corpus.align.en-zh")
    # align records are names, not text: not counted for the reduced vocabulary
    assert str(align_file) not in by["vocab"].argv and str(entity_file) in by["vocab"].argv

    # every arm starts from the warm-up export; arm b trains on the align records
    warm = out / "models" / "warmup"
    for arm in ARMS:
        argv = by[f"pretrain.{arm}"].argv
        assert f"model={warm}" in argv
        assert {warm, warm / "config.json"} <= set(by[f"pretrain.{arm}"].inputs)
        assert names.index(f"pretrain.{arm}") > names.index("export.warmup")
    train_b = next(a for a in by["pretrain.b"].argv if a.startswith("train_files="))
    assert train_b == f"train_files={entity_file},{align_file}"
    assert align_file in by["pretrain.b"].inputs

    # probe: base + every stage in order, after the exports, before the benchmark
    probes = [n for n in names if n.startswith("probe.")]
    assert probes == ["probe.base", "probe.warmup", *[f"probe.{a}" for a in ARMS], "probe.report"]
    last_export = max(i for i, n in enumerate(names) if n.startswith("export."))
    first_bench = min(i for i, n in enumerate(names) if n.startswith("benchmark."))
    assert last_export < names.index("probe.base") and names.index("probe.report") < first_bench
    base = by["probe.base"]
    assert base.argv == [
        "probe",
        "--model",
        str(inp / "model"),
        "--tokenizer",
        str(inp / "tok"),
        "--kb",
        str(kb),
        "--lang",
        "en",
        "--target-lang",
        "zh",
        "--concepts",
        str(heldout),
        "--parallel",
        str(inp / "probe.en"),
        str(inp / "probe.zh"),
        "--max-terms",
        "300",
        "--max-sentences",
        "100",
        "--seed",
        "7",
        "--out",
        str(out / "probe" / "base"),
    ]
    assert base.outputs == [out / "probe" / "base" / "probe.json"]
    assert {kb, heldout, inp / "probe.en", inp / "probe.zh"} <= set(base.inputs)
    arm = by["probe.c"]
    assert arm.argv[:3] == ["probe", "--model", str(out / "models" / "c")] and "--tokenizer" not in arm.argv
    assert out / "models" / "c" / "config.json" in arm.inputs and arm.clean == [out / "probe" / "c"]
    report = by["probe.report"]
    assert report.argv is None and report.action is not None
    assert report.inputs == [out / "probe" / m / "probe.json" for m in ["base", "warmup", *ARMS]]
    assert report.outputs == [out / "probe" / f"results.{x}" for x in ("json", "md", "png")]

    # the benchmark compares all eight models, one step each, then the report
    assert [n for n in names if n.startswith("benchmark.")] == [
        "benchmark.base",
        "benchmark.warmup",
        *[f"benchmark.{a}" for a in ARMS],
        "benchmark.report",
    ]
    compare = yaml.safe_load(by["benchmark.report"].generated[out / "benchmark" / "compare.yaml"])
    assert [m["path"] for m in compare["models"]][2:] == [str(out / "models" / a) for a in ARMS]


def test_chained_stage_inputs_do_not_depend_on_the_export_existing(tmp_path: Path) -> None:
    """The earlier stage's export is declared before it exists. Declared only once it existed, the
    arms' fingerprints (computed from the inputs the plan lists) would differ between the first run
    and the next, and the next invocation would train every arm again from scratch."""
    cfg = _load(tmp_path, _config(tmp_path))
    before = {s.name: s.inputs for s in build_plan(cfg)}
    warm = tmp_path / "run" / "models" / "warmup"
    warm.mkdir(parents=True)
    (warm / "config.json").write_text("{}", encoding="utf-8")
    assert {s.name: s.inputs for s in build_plan(cfg)} == before


def test_defaults_and_absent_sections(tmp_path: Path) -> None:
    raw = _config(tmp_path, holdout=True, probe={"models": ["base", "g"]})
    raw["corpus"] = {"levels": ["entity", "fact", "align"]}
    cfg = _load(tmp_path, raw)
    assert cfg.holdout == {"fraction": 0.1, "max_concepts": None, "seed": 7, "langs": ["en", "zh"], "args": []}
    by = _by_name(build_plan(cfg))
    assert "--max-concepts" not in by["kb.split"].argv and by["kb.split"].argv[5:11] == [
        "0.1",
        "--seed",
        "7",
        "--langs",
        "en,zh",
        "--out",
    ]
    assert "--entity-records" not in by["corpus.align.en-zh"].argv
    assert [n for n in by if n.startswith("probe.")] == ["probe.base", "probe.g", "probe.report"]
    p = by["probe.g"].argv
    assert (
        "--parallel" not in p
        and p[p.index("--max-terms") + 1] == "2000"
        and p[p.index("--max-sentences") + 1] == "1000"
    )

    # holdout seed/langs given; no holdout, no probe, default levels: none of the new steps or flags
    cfg = _load(tmp_path, _config(tmp_path, holdout={"seed": 3, "langs": "zh"}))
    assert _by_name(build_plan(cfg))["kb.split"].argv[6:10] == ["--seed", "3", "--langs", "zh"]
    raw = _config(tmp_path)
    for key in ("holdout", "probe"):
        del raw[key]
    raw["corpus"] = {}
    raw["pretrain"] = raw["pretrain"][:2]
    raw["pretrain"][1]["train"] = ["entity"]
    raw["benchmark"]["compare"] = ["base", "b"]
    steps = build_plan(_load(tmp_path, raw))
    names = [s.name for s in steps]
    assert not any(n == "kb.split" or n.startswith(("probe.", "corpus.align")) for n in names)
    assert not any("--exclude-concepts" in (s.argv or []) for s in steps)
    # a probe without holdout passes no --concepts
    raw["probe"] = {}
    steps = build_plan(_load(tmp_path, raw))
    assert "--concepts" not in _by_name(steps)["probe.base"].argv


@pytest.mark.parametrize(
    "change, message",
    [
        ({"holdout": {"fraction": 1.5}}, r"holdout.fraction must be a number in \(0, 1\]"),
        ({"holdout": {"fraction": 0.1, "langs": ["fr"]}}, r"holdout.langs must list language codes of `languages`"),
        ({"holdout": {"max_concepts": 0}}, r"holdout.max_concepts must be an integer >= 1"),
        ({"holdout": {"fracton": 0.1}}, r"holdout: unknown key\(s\) fracton"),
        (
            {"probe": {"models": ["base", "nosuch"]}},
            r"probe.models: 'nosuch' is neither 'base' nor a pretraining stage",
        ),
        ({"probe": {"parallel": {"en": "x"}}}, r"probe.parallel needs line-aligned files for both 'en' and 'zh'"),
        ({"probe": {"parallel": {"en": "x", "de": "y"}}}, r"probe.parallel: unknown key\(s\) de"),
        ({"probe": {"max_terms": "many"}}, r"probe.max_terms must be an integer >= 1"),
        (
            {"corpus": {"levels": ["fact", "align"], "align_mentions": True}},
            r"corpus.align_mentions needs both the align and the entity",
        ),
        (
            {"corpus": {"levels": ["entity", "algin"]}},
            r"corpus.levels must be a subset of \['entity', 'fact', 'passage', 'align'\]",
        ),
        ({"corpus": {"args": {"algin": ["-x"]}}}, r"corpus.args: unknown key\(s\) algin"),
        (
            {"pretrain": [{"name": "report", "config": "pre.yaml"}]},
            r"name 'report' must be unique, not 'base' or 'report'",
        ),
    ],
)
def test_new_keys_are_validated_with_one_line_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    raw = _config(tmp_path, **change)
    if "pretrain" in change:
        raw["benchmark"]["compare"] = ["base"]
        raw.pop("probe")
    with pytest.raises(KbioxlmError, match=message) as exc:
        _load(tmp_path, raw)
    assert str(exc.value).startswith(str(tmp_path / "pipe.yaml")) and "\n" not in str(exc.value)


def test_x_keys_hold_yaml_anchors_and_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "pipe.yaml"
    path.write_text(
        "out: o\nbase_model: m\ndocuments: {en: [a.jsonl]}\ncorpus: {levels: []}\n"
        "x-arm: &arm {max_steps: 150, learning_rate: 2.0e-5}\n"
        "pretrain:\n"
        "  - {name: warmup, config: p.yaml, train: [mono], overrides: {<<: *arm, max_steps: 300}}\n"
        "  - {name: b, config: p.yaml, model: warmup, train: [mono], overrides: *arm}\n",
        encoding="utf-8",
    )
    cfg = load_pipeline_config(path)
    assert [st["overrides"] for st in cfg.pretrain] == [
        {"max_steps": 300, "learning_rate": 2.0e-5},
        {"max_steps": 150, "learning_rate": 2.0e-5},
    ]
    path.write_text(path.read_text(encoding="utf-8") + "y-arm: 2\n", encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"unknown key\(s\) y-arm"):
        load_pipeline_config(path)


def test_plan_errors_for_the_new_steps(tmp_path: Path) -> None:
    raw = _config(tmp_path)
    raw["corpus"] = {"levels": ["entity", "fact", "passage"]}  # no align level, but arm b trains on it
    with pytest.raises(KbioxlmError, match=r"pretrain stage 'b' wants 'align' records but the pipeline builds none"):
        build_plan(_load(tmp_path, raw))
    raw = _config(tmp_path, kb={}, documents={}, corpus={"levels": ["passage"]})
    raw["pretrain"] = []
    raw["benchmark"]["compare"] = ["base"]
    raw.pop("probe")
    with pytest.raises(KbioxlmError, match=r"holdout needs a knowledge base"):
        build_plan(_load(tmp_path, raw))
    raw.pop("holdout")
    raw["probe"] = {}
    with pytest.raises(KbioxlmError, match=r"probe needs a knowledge base"):
        build_plan(_load(tmp_path, raw))
    raw.pop("probe")
    raw["corpus"] = {"levels": ["align"]}
    with pytest.raises(KbioxlmError, match=r"the align level needs a knowledge base"):
        build_plan(_load(tmp_path, raw))


def test_dry_run_prints_the_new_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _config(tmp_path)
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    assert main(["pipeline", "--config", str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    out, inp = tmp_path / "run", tmp_path / "in"
    kb, heldout = out / "kb" / "kb.sqlite", out / "kb" / "heldout.txt"
    assert (
        f"$ kbioxlm kb split --kb {kb} --holdout-fraction 0.2 --seed 7 --langs en,zh --out {heldout} --max-concepts 50"
    ) in text
    assert f"--seed 7 --exclude-concepts {heldout}\n" in text  # the fact steps
    assert (
        f"$ kbioxlm corpus align --kb {kb} --lang en --target-lang zh --out {out}/corpus/align.en-zh.jsonl --seed 7 "
        f"--exclude-concepts {heldout} --entity-records {out}/corpus/entity.en+zh.jsonl --max-pairs 500"
    ) in text
    assert (
        f"$ kbioxlm probe --model {out}/models/g --kb {kb} --lang en --target-lang zh --concepts {heldout} "
        f"--parallel {inp}/probe.en {inp}/probe.zh --max-terms 300 --max-sentences 100 --seed 7 --out {out}/probe/g"
    ) in text
    assert f"$ kbioxlm pipeline --config {path} --only probe.report" in text
    assert text.index("[") < text.index("probe.base") < text.index("benchmark.base")
    assert not out.exists()


def _probe_json(acc: float, sentences: bool) -> dict[str, Any]:
    """The shape `kbioxlm probe` writes (scores in percent; top level = last layer)."""

    def section(n: int, fwd: float, bwd: float) -> dict[str, Any]:
        return {
            "n": n,
            "n_available": n + 10,
            "en_zh": {"acc1": fwd, "mrr": fwd + 10},
            "zh_en": {"acc1": bwd, "mrr": bwd + 10},
            "layer": 12,
            "best_layer": {"en_zh": {"layer": 8, "acc1": fwd + 5}, "zh_en": {"layer": 9, "acc1": bwd}},
            "per_layer": [],
        }

    return {
        "term_retrieval": section(1234, acc, acc / 2),
        "sentence_retrieval": section(100, 90.0, 80.0) if sentences else None,
        "model": "m",
        "source_lang": "en",
        "target_lang": "zh",
        "seconds": 3.0,
    }


def test_probe_report_step_writes_json_table_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _config(tmp_path, probe={"models": ["base", "warmup", "b"]})
    raw["benchmark"]["names"] = {"base": "XLM-R", "b": "arm-b"}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    out = tmp_path / "run"
    written = {"base": _probe_json(25.0, True), "warmup": _probe_json(50.0, False), "b": _probe_json(62.5, True)}
    for name, data in written.items():
        (out / "probe" / name).mkdir(parents=True)
        (out / "probe" / name / "probe.json").write_text(json.dumps(data), encoding="utf-8")
    assert main(["pipeline", "--config", str(path), "--only", "probe.report"]) == 0
    assert "1 ran" in capsys.readouterr().out

    results = json.loads((out / "probe" / "results.json").read_text(encoding="utf-8"))
    assert results["models"] == written and results["languages"] == ["en", "zh"]
    assert results["labels"] == {"base": "XLM-R", "warmup": "warmup", "b": "arm-b"}
    md = (out / "probe" / "results.md").read_text(encoding="utf-8")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines() if ln.startswith("|")]
    assert rows[0] == [
        "Model",
        "term acc@1 en→zh",
        "term acc@1 zh→en",
        "term MRR en→zh",
        "term MRR zh→en",
        "best layer en→zh (acc@1)",
        "best layer zh→en (acc@1)",
        "sentence acc@1 en→zh",
        "sentence acc@1 zh→en",
        "n terms",
        "n sentences",
    ]
    assert rows[2] == [
        "XLM-R",
        "25.0",
        "12.5",
        "35.0",
        "22.5",
        "30.0 (layer 8)",
        "12.5 (layer 9)",
        "90.0",
        "80.0",
        "1,234 of 1,244",
        "100 of 110",
    ]
    assert rows[3][0] == "warmup" and rows[3][7:] == ["–", "–", "1,234 of 1,244", "–"]
    assert rows[4][:2] == ["arm-b", "62.5"]
    assert (out / "probe" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # unchanged probe.json files: skipped on the next run; a changed one redoes the report
    assert main(["pipeline", "--config", str(path), "--only", "probe.report"]) == 0
    assert "skipped (done" in capsys.readouterr().out
    (out / "probe" / "b" / "probe.json").write_text(json.dumps(_probe_json(75.0, True)), encoding="utf-8")
    assert main(["pipeline", "--config", str(path), "--only", "probe.report"]) == 0
    assert "settings or inputs changed" in capsys.readouterr().out
    assert "| arm-b | 75.0 |" in (out / "probe" / "results.md").read_text(encoding="utf-8")


def test_probe_report_names_a_missing_probe_json(tmp_path: Path) -> None:
    from kbioxlm.pipeline.probe_report import write_probe_report

    with pytest.raises(KbioxlmError, match=r"probe.json: missing; run the probe.base step first"):
        write_probe_report({"base": tmp_path / "base" / "probe.json"}, tmp_path, ("en", "zh"))


def _multi_probe_json(x: str, fwd: float, bwd: float, digest: str | None) -> dict[str, Any]:
    term: dict[str, Any] = {
        "n": 100,
        "n_available": 100,
        f"en_{x}": {"acc1": fwd, "mrr": fwd},
        f"{x}_en": {"acc1": bwd, "mrr": bwd},
        "layer": 12,
    }
    if digest is not None:
        term["items_sha256"] = digest
    return {"term_retrieval": term, "sentence_retrieval": None, "model": "m", "source_lang": "en", "target_lang": x}


def test_multi_language_report_puts_a_compared_run_beside_and_checks_its_questions(tmp_path: Path) -> None:
    """probe.compare: another run's model of one pair joins the several-language table and chart,
    only when it asked the same questions (same items digest); otherwise a one-line error."""
    from kbioxlm.pipeline.probe_report import write_multi_probe_report

    results: dict[str, dict[str, Path]] = {}
    for x, digest in (("es", "d-es"), ("fr", "d-fr")):
        for model, acc in (("base", 80.0), ("multi", 90.0)):
            p = tmp_path / "run" / x / model / "probe.json"
            p.parent.mkdir(parents=True)
            p.write_text(json.dumps(_multi_probe_json(x, acc, acc + 1, digest)), encoding="utf-8")
            results.setdefault(x, {})[model] = p
    other = tmp_path / "other" / "probe.json"
    other.parent.mkdir()
    other.write_text(json.dumps(_multi_probe_json("es", 92.5, 93.5, "d-es")), encoding="utf-8")
    root = tmp_path / "run"
    write_multi_probe_report(results, root, "en", {"base": "e5"}, {"en-es": other})
    md = (root / "results.md").read_text(encoding="utf-8")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines() if ln.startswith("|")]
    assert rows[0] == ["Model", "en→es", "es→en", "en→fr", "fr→en"]
    assert rows[2:] == [
        ["e5", "80.0", "81.0", "80.0", "81.0"],
        ["multi", "90.0", "91.0", "90.0", "91.0"],
        ["en-es", "92.5", "93.5", "–", "–"],
    ]
    assert "en-es: `../other/probe.json`" in md
    assert (
        json.loads((root / "results.json").read_text(encoding="utf-8"))["models"]["en-es"]["es"]["term_retrieval"][
            "en_es"
        ]["acc1"]
        == 92.5
    )
    assert (root / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    other.write_text(json.dumps(_multi_probe_json("es", 92.5, 93.5, "another-split")), encoding="utf-8")
    with pytest.raises(
        KbioxlmError,
        match=r"other/probe.json: probe.compare 'en-es' did not probe the same en<->es terms as "
        r"this run; its items_sha256 differs",
    ):
        write_multi_probe_report(results, root, "en", {}, {"en-es": other})
    other.write_text(json.dumps(_multi_probe_json("es", 92.5, 93.5, None)), encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"no items_sha256 \(probed by an older kbioxlm: run its probe again\)"):
        write_multi_probe_report(results, root, "en", {}, {"en-es": other})
    other.write_text(json.dumps(_multi_probe_json("de", 1.0, 1.0, "d-es")), encoding="utf-8")
    with pytest.raises(KbioxlmError, match=r"probes en<->de; this run probes en<->es, en<->fr"):
        write_multi_probe_report(results, root, "en", {}, {"en-es": other})


def test_probe_compare_is_validated(tmp_path: Path) -> None:
    raw = _config(tmp_path, probe={"models": ["base", "b"], "compare": {"b": "x/probe.json"}})
    with pytest.raises(KbioxlmError, match=r"probe.compare label 'b' is also a model of this run"):
        _load(tmp_path, raw)
    raw["probe"]["compare"] = ["x/probe.json"]
    with pytest.raises(KbioxlmError, match=r"probe.compare maps a label to another run's probe.json"):
        _load(tmp_path, raw)
    raw["probe"]["compare"] = {"other": "x/probe.json"}  # relative to the config file, an input of probe.report
    report = _by_name(build_plan(_load(tmp_path, raw)))["probe.report"]
    assert tmp_path / "x" / "probe.json" in report.inputs and report.params["compare"] == {
        "other": str(tmp_path / "x" / "probe.json")
    }
