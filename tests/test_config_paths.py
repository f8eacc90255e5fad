"""Relative paths inside a config are taken from the config's folder, so every command does the same
from any working directory; fingerprints do not depend on how a path was spelled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kbioxlm.paths import default_shared, portable, resolve_model
from kbioxlm.pipeline.config import load_pipeline_config
from kbioxlm.pipeline.plan import Step, build_plan
from kbioxlm.pipeline.runner import step_fingerprint

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> Path:
    """tmp/proj (a project: pyproject.toml) with configs/, a pretraining and a benchmark config; tmp/shared."""
    proj = tmp_path / "proj"
    (proj / "configs").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    (tmp_path / "shared" / "models" / "m").mkdir(parents=True)
    (proj / "configs" / "pt.yaml").write_text("max_steps: 2\n", encoding="utf-8")
    (proj / "configs" / "bench.yaml").write_text(
        'models: [{name: b, path: "${shared}/models/m"}]\ntasks: [{name: t, type: ner, files: '
        "{en: {train: ../data/t.txt, test: ../data/t.txt}, zh: {train: ../data/z.txt, test: ../data/z.txt}}}]\n"
        "directions: [en-zh]\nseeds: [1]\n",
        encoding="utf-8",
    )
    (proj / "configs" / "pipe.yaml").write_text(
        yaml.safe_dump(
            {
                "out": "../runs/x",
                "base_model": {"name": "b", "path": "${shared}/models/m", "tokenizer": "xlm-roberta-base"},
                "kb": {"tsv": [{"concepts": "../data/c.tsv"}]},
                "documents": {"en": ["../data/en.jsonl"], "zh": [{"path": "../data/zh.jsonl", "format": "dialogue"}]},
                "pairs": ["../data/pairs.jsonl", {"en": "../data/p.en", "zh": "../data/p.zh"}],
                "pretrain": [
                    {
                        "name": "s",
                        "config": "pt.yaml",
                        "train": ["entity", "mono", "../data/extra.jsonl#mlm"],
                        "overrides": {"max_steps": 1, "eval_files": "../data/ev.jsonl"},
                    }
                ],
                "benchmark": {"config": "bench.yaml"},
            }
        ),
        encoding="utf-8",
    )
    return proj


def _argvs(cfg_path: Path) -> list[list[str] | None]:
    return [s.argv for s in build_plan(load_pipeline_config(cfg_path))]


def test_pipeline_paths_are_taken_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    monkeypatch.delenv("KBIOXLM_SHARED", raising=False)
    monkeypatch.chdir(proj)
    cfg = load_pipeline_config("configs/pipe.yaml")
    assert cfg.out == proj / "runs" / "x"
    assert cfg.variables["shared"] == str(tmp_path / "shared")  # beside the project, not the cwd's ../shared
    assert cfg.base_model == {"name": "b", "path": str(tmp_path / "shared/models/m"), "tokenizer": "xlm-roberta-base"}
    assert cfg.kb["tsv"][0]["concepts"] == str(proj / "data/c.tsv")
    assert cfg.documents["zh"][0] == {"path": str(proj / "data/zh.jsonl"), "format": "dialogue"}
    st = cfg.pretrain[0]
    assert st["config"] == str(proj / "configs/pt.yaml")
    assert st["train"] == ["entity", "mono", f"{proj}/data/extra.jsonl#mlm"]
    assert st["overrides"]["eval_files"] == str(proj / "data/ev.jsonl")
    assert cfg.benchmark["config"] == str(proj / "configs/bench.yaml")
    from_root = _argvs(Path("configs/pipe.yaml"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _argvs(proj / "configs" / "pipe.yaml") == from_root  # the same plan from any directory
    with pytest.raises(Exception, match="configs/pipe.yaml: no such pipeline config"):
        load_pipeline_config("configs/pipe.yaml")  # the config path itself is typed: from the cwd


def test_generated_benchmark_config_is_resolved_against_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = _project(tmp_path)
    monkeypatch.delenv("KBIOXLM_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)
    step = next(s for s in build_plan(load_pipeline_config(proj / "configs/pipe.yaml")) if s.name == "benchmark.base")
    (text,) = step.generated.values()
    gen = yaml.safe_load(text.split("\n", 1)[1])
    assert gen["models"] == [{"name": "b", "path": str(tmp_path / "shared/models/m"), "tokenizer": "xlm-roberta-base"}]
    assert gen["tasks"][0]["files"]["en"]["train"] == str(proj / "data/t.txt")
    assert "data_root" not in gen  # ${shared} is where the generated config finds it on its own


def test_benchmark_config_alone_resolves_from_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbioxlm.tasks.benchmark import load_benchmark_config

    proj = _project(tmp_path)
    monkeypatch.delenv("KBIOXLM_SHARED", raising=False)
    monkeypatch.delenv("KBIOXLM_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load_benchmark_config(proj / "configs" / "bench.yaml")
    assert cfg.models[0].path == str(tmp_path / "shared/models/m")
    assert cfg.datasets[0].files["en"]["train"] == proj / "data/t.txt"
    (proj / "configs" / "rel.yaml").write_text("models: [../m]\ntasks: [ade]\n", encoding="utf-8")
    cfg = load_benchmark_config(proj / "configs" / "rel.yaml")
    assert cfg.models[0].path == str(proj / "m")
    assert cfg.datasets[0].files["en"]["train"] == tmp_path / "shared/data/kbioxlm-release/ner/ade/eng_to_zh/train.txt"


def test_model_values_keep_hub_ids(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    assert resolve_model("xlm-roberta-base", tmp_path) == "xlm-roberta-base"
    assert resolve_model("microsoft/infoxlm-base", tmp_path) == "microsoft/infoxlm-base"
    assert resolve_model("local", tmp_path) == str(tmp_path / "local")  # exists beside the config
    assert resolve_model("./later", tmp_path) == str(tmp_path / "later")
    assert resolve_model("runs/a/model", tmp_path) == str(tmp_path / "runs/a/model")  # not a hub id


def test_fingerprint_does_not_depend_on_the_spelling_of_a_path(tmp_path: Path) -> None:
    """A step spelled with absolute paths has the fingerprint of the same step spelled relative to the
    anchor (the older, current-directory spelling), and another file still changes it."""
    root = tmp_path / "repo"
    (root / "runs").mkdir(parents=True)
    f = root / "runs" / "in.txt"
    f.write_text("x", encoding="utf-8")
    old = Step(
        "s",
        "t",
        argv=["kb", "stats", "--kb", "runs/in.txt", "x=../shared/a,runs/b"],
        inputs=[Path("runs/in.txt")],
        generated={Path("runs/g.yaml"): "path: ../shared/m\n"},
    )
    new = Step(
        "s",
        "t",
        argv=["kb", "stats", "--kb", str(f), f"x={tmp_path}/shared/a,{root}/runs/b"],
        inputs=[f],
        generated={root / "runs/g.yaml": f"path: {tmp_path}/shared/m\n"},
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert step_fingerprint(old) == step_fingerprint(new, root)
    finally:
        os.chdir(cwd)
    other = Step("s", "t", argv=["kb", "stats", "--kb", str(tmp_path / "other.txt")], inputs=[f])
    assert step_fingerprint(other, root) != step_fingerprint(new, root)
    assert portable(f"--x={root}x/y", root) == "--x=../repox/y"  # a sibling folder is not the root itself


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (ROOT / "configs").glob("e2e-*.yaml")) + ["ablation-small-cpu.yaml"]
)
def test_shipped_pipeline_configs_plan_the_same_from_anywhere(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KBIOXLM_SHARED", "/nonexistent/shared")
    monkeypatch.setenv("UMLS_DIR", "/nonexistent/umls")
    monkeypatch.chdir(ROOT)
    here = _argvs(Path("configs") / name)
    monkeypatch.chdir(tmp_path)
    assert _argvs(ROOT / "configs" / name) == here
    cfg = load_pipeline_config(ROOT / "configs" / name)
    assert cfg.out.is_relative_to(ROOT / "runs")
    assert all(Path(st["config"]).is_file() for st in cfg.pretrain)
    assert cfg.benchmark is None or Path(cfg.benchmark["config"]).is_file()


def test_default_shared_prefers_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBIOXLM_SHARED", "/data/sh")
    assert default_shared(ROOT / "configs" / "e2e-small-cpu.yaml") == Path("/data/sh")
    monkeypatch.delenv("KBIOXLM_SHARED")
    assert default_shared(ROOT / "configs" / "e2e-small-cpu.yaml") == ROOT.parent / "shared"


def test_renamed_flags_keep_the_fingerprint() -> None:
    """The --lang/--target-lang renames of the pipeline's commands do not redo finished steps."""
    old = Step("p", "t", argv=["corpus", "passage", "--pairs", "/x", "--lang-a", "en", "--lang-b", "zh"])
    new = Step("p", "t", argv=["corpus", "passage", "--pairs", "/x", "--lang", "en", "--target-lang", "zh"])
    assert step_fingerprint(old) == step_fingerprint(new)
    other = Step("p", "t", argv=["corpus", "passage", "--pairs", "/x", "--lang", "zh", "--target-lang", "en"])
    assert step_fingerprint(other) != step_fingerprint(new)
