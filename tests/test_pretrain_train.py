"""Pretraining data mixing, config handling and the accelerate loop (tiny random model, real XLM-R tokenizer).

Covers: loss falls on a fixed tiny set; exact resume (split run == uninterrupted run, bit for bit);
a 2-process gloo run under ``torchrun`` keeps identical weights on both ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from kbioxlm.errors import KbioxlmError  # noqa: E402
from kbioxlm.pretrain.data import (  # noqa: E402
    DataPosition,
    MixedSchedule,
    load_pretrain_records,
    normalise_mix,
    parse_train_files,
    rank_slice,
)
from kbioxlm.pretrain.trainer import load_pretrain_config, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

EN = [
    "the patient was treated with aspirin for chronic pain",
    "metformin lowers blood glucose in type two diabetes",
    "ibuprofen may cause gastric bleeding in older adults",
    "paracetamol overdose can lead to acute liver failure",
]
ZH = [
    "患者因慢性疼痛服用阿司匹林治疗",
    "二甲双胍可以降低血糖",
    "布洛芬可能导致胃出血",
    "对乙酰氨基酚过量会导致急性肝衰竭",
]
DRUGS = [("aspirin", "阿司匹林"), ("metformin", "二甲双胍"), ("ibuprofen", "布洛芬"), ("paracetamol", "对乙酰氨基酚")]


def _ent(text: str, sub: str, lang: str, concept: str, switched: bool = False) -> dict:
    s = text.index(sub)
    return {"start": s, "end": s + len(sub), "concept": concept, "lang": lang, "switched": switched}


def write_corpus(d: Path) -> dict[str, Path]:
    """A small fixed set of all four record kinds, written by the test itself."""
    d.mkdir(parents=True, exist_ok=True)
    docs, ents, facts, pairs = [], [], [], []
    for i in range(24):
        en, zh = EN[i % 4], ZH[i % 4]
        drug_en, drug_zh = DRUGS[i % 4]
        docs.append({"id": f"en{i}", "lang": "en", "text": en, "entities": [_ent(en, drug_en, "en", f"D{i % 4}")]})
        docs.append({"id": f"zh{i}", "lang": "zh", "text": zh, "entities": [_ent(zh, drug_zh, "zh", f"D{i % 4}")]})
        sw = en.replace(drug_en, drug_zh)
        ents.append(
            {
                "id": f"e{i}",
                "lang": "en",
                "task": "entity",
                "text": sw,
                "entities": [_ent(sw, drug_zh, "zh", f"D{i % 4}", True)],
            }
        )
        ft = f"{en}</s>{drug_zh}治疗疼痛"
        facts.append(
            {
                "id": f"f{i}",
                "lang": "en",
                "task": "fact",
                "text": ft,
                "entities": [_ent(ft, drug_zh, "zh", f"D{i % 4}"), _ent(ft, "疼痛", "zh", "A1")],
                "relations": [
                    {
                        **{k: v for k, v in _ent(ft, "治疗", "zh", "x").items() if k in ("start", "end")},
                        "rel": "may_treat",
                        "lang": "zh",
                        "head": 0,
                        "tail": 1,
                    }
                ],
            }
        )
        label = ("positive", "random", "context")[i % 3]
        other = {"positive": zh, "random": ZH[(i + 1) % 4], "context": EN[(i + 1) % 4]}[label]
        pairs.append(
            {
                "id": f"p{i}",
                "task": "passage",
                "text_a": en,
                "lang_a": "en",
                "text_b": other,
                "lang_b": "en" if label == "context" else "zh",
                "label": label,
            }
        )
    files = {}
    for name, recs in (("docs", docs), ("entity", ents), ("fact", facts), ("passage", pairs)):
        files[name] = d / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, xlmr_tokenizer_path):
    """Record files + a kept-id list (the ids of this corpus) so the tiny model's head is small."""
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("pt_corpus")
    files = write_corpus(d)
    tok = AutoTokenizer.from_pretrained(str(xlmr_tokenizer_path))
    ids = set(tok.all_special_ids)
    for path in files.values():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            for key in ("text", "text_a", "text_b"):
                if key in rec:
                    ids.update(tok(rec[key])["input_ids"])
    kept = d / "kept.json"
    kept.write_text(json.dumps(sorted(ids)), encoding="utf-8")
    return {"files": files, "kept": kept, "tokenizer": str(xlmr_tokenizer_path)}


def tiny_overrides(corpus, out: Path, **extra) -> list[str]:
    base = {
        "model_config": json.dumps(
            {
                "model_type": "xlm-roberta",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            }
        ),
        "tokenizer": corpus["tokenizer"],
        "kept_ids": str(corpus["kept"]),
        "train_files": ",".join(str(p) for p in corpus["files"].values()),
        "output_dir": str(out),
        "per_device_train_batch_size": 8,
        "max_length": 48,
        "learning_rate": 0.02,
        "warmup_steps": 2,
        "eval_fraction": 0.2,
        "eval_steps": 0,
        "save_steps": 0,
        "logging_steps": 5,
        "report_to": "none",
        "seed": 7,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def load_final(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "final" / "model.safetensors"))


# ------------------------------------------------------------------------------ config and data
def test_config_overrides_and_errors(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "model: m\ntrain_files: a.jsonl\noutput_dir: o\nlearning_rate: 1e-4\nmix: {mlm: 1, entity: 1}\n"
    )
    cfg = load_pretrain_config(
        cfg_file, ["max_steps=12", "lr=2e-5", "mix.fact=0.5", "train_files=x.jsonl,y.jsonl#mlm", "bf16=true"]
    )
    assert cfg.max_steps == 12 and cfg.learning_rate == 2e-5
    assert cfg.mix == {"mlm": 1, "entity": 1, "fact": 0.5}
    assert cfg.tokenizer == "m" and cfg.mixed_precision == "bf16"
    assert [(f.path, f.as_task) for f in parse_train_files(cfg.train_files)] == [("x.jsonl", None), ("y.jsonl", "mlm")]
    with pytest.raises(KbioxlmError, match="unknown config key 'learning_rte'"):
        load_pretrain_config(cfg_file, ["learning_rte=1"])
    with pytest.raises(KbioxlmError, match="max_steps"):
        load_pretrain_config(cfg_file, ["max_steps=abc"])
    with pytest.raises(KbioxlmError, match="train_files"):
        load_pretrain_config(cfg_file, ["train_files="])


def test_bad_record_reports_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(
        '{"id": "1", "lang": "en", "text": "ok"}\n{"id": "2", "lang": "en", "task": "passage", "text_a": "a"}\n'
    )
    with pytest.raises(KbioxlmError, match=rf"{p.name}:2: "):
        load_pretrain_records(parse_train_files(str(p)))


def test_mixing_proportions_and_resumable_order(corpus):
    pools = load_pretrain_records(parse_train_files([str(p) for p in corpus["files"].values()]))
    mix = normalise_mix({"mlm": 0.5, "entity": 0.2, "fact": 0.2, "passage": 0.1}, {t: len(v) for t, v in pools.items()})
    sched = MixedSchedule(pools, mix, seed=3, epoch_size=4000)
    gen = sched.global_batches(DataPosition(), 16)
    seen = [r for _ in range(200) for r in next(gen)[0]]
    frac = {t: sum((r.get("task") or "mlm") == t for r in seen) / len(seen) for t in mix}
    for t, p in mix.items():
        assert abs(frac[t] - p) < 0.04, (t, frac[t], p)
    # same seed, same order; resuming at a saved position continues exactly
    a = MixedSchedule(pools, mix, seed=3, epoch_size=100).global_batches(DataPosition(), 16)
    batches = [next(a) for _ in range(10)]  # crosses epochs (100 // 16 = 6 batches per epoch)
    b = MixedSchedule(pools, mix, seed=3, epoch_size=100).global_batches(batches[4][1], 16)
    assert [x[0] for x in batches[5:]] == [next(b)[0] for _ in range(5)]
    assert batches[6][1].epoch == 1
    c = MixedSchedule(pools, mix, seed=4, epoch_size=100).global_batches(DataPosition(), 16)
    assert next(c)[0] != batches[0][0]
    # rank slices partition the global batch
    g = batches[0][0]
    assert rank_slice(g, 0, 8) + rank_slice(g, 1, 8) == g


# ------------------------------------------------------------------------------ training
def test_loss_falls_and_outputs(corpus, tmp_path):
    out = tmp_path / "run"
    cfg = load_pretrain_config(
        None,
        tiny_overrides(
            corpus,
            out,
            max_steps=30,
            eval_files=str(corpus["files"]["docs"])
            + ","
            + str(corpus["files"]["fact"])
            + ","
            + str(corpus["files"]["passage"]),
            report_to="tensorboard",
        ),
    )
    train(cfg)
    evals = read_jsonl(out / "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 30]
    first, last = evals[0], evals[-1]
    assert last["loss"] < first["loss"] * 0.95, (first, last)
    assert last["acc_fact"] > first["acc_fact"] + 0.1, (first, last)  # the relation span is always 治疗 here
    assert {"acc_mlm", "acc_fact", "pair_acc"} <= set(last)
    logs = read_jsonl(out / "train_log.jsonl")
    assert logs[-1]["loss"] < logs[0]["loss"]
    info = json.loads((out / "kbioxlm_config.json").read_text())
    assert info["global_step"] == 30 and info["reduced_vocab_size"] > 10 and info["final_eval"]["loss"] == last["loss"]
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    from kbioxlm.pretrain.model import KnowledgeAnchoredModel

    model = KnowledgeAnchoredModel.load(out / "final")
    assert len(model.kept_ids) == info["reduced_vocab_size"]
    # a second run into the same folder without resume/overwrite is refused (no silent mixing)
    with pytest.raises(KbioxlmError, match="already holds a run"):
        train(load_pretrain_config(None, tiny_overrides(corpus, out, max_steps=2, save_steps=1)))


def test_split_run_resumes_exactly(corpus, tmp_path):
    common = dict(max_steps=6, save_steps=3, eval_steps=3, gradient_accumulation_steps=2, bf16="true")
    full = tmp_path / "full"
    train(load_pretrain_config(None, tiny_overrides(corpus, full, **common)))
    split = tmp_path / "split"
    train(load_pretrain_config(None, tiny_overrides(corpus, split, stop_at_step=3, **common)))
    assert not (split / "final").exists() and (split / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
    state = json.loads((split / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["data_position"]["index"] > 0
    train(load_pretrain_config(None, tiny_overrides(corpus, split, resume_from_checkpoint="auto", **common)))
    a, b = load_final(full), load_final(split)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert read_jsonl(full / "eval.jsonl") == read_jsonl(split / "eval.jsonl")
    # and the run did learn something (weights moved from the step-3 checkpoint)
    from safetensors.torch import load_file

    ckpt_dir = split / "checkpoints" / "checkpoint-3"
    ckpt = load_file(str(ckpt_dir / "model.safetensors"))
    assert any(not torch.equal(ckpt[k], a[k]) for k in a if k in ckpt)
    # nothing in a checkpoint is a pickle: tensors in safetensors, the rest plain JSON
    assert {p.suffix for p in ckpt_dir.iterdir()} == {".json", ".safetensors"}


class _Evil:
    """Unpickling this creates a file: proof that a loader ran code from a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_checkpoint_files(corpus, tmp_path):
    """Checkpoints are safetensors + JSON; pickle files planted in one are never loaded, and a
    checkpoint in the old pickle-only format is refused with one line."""
    import pickle

    out = tmp_path / "run"
    common = dict(max_steps=2, save_steps=1, eval_at_start="false")
    train(load_pretrain_config(None, tiny_overrides(corpus, out, stop_at_step=1, **common)))
    ckpt = out / "checkpoints" / "checkpoint-1"
    assert {p.suffix for p in ckpt.iterdir()} == {".json", ".safetensors"}
    marker = tmp_path / "code-ran"
    for name in ("custom_checkpoint_0.pkl", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        (ckpt / name).write_bytes(pickle.dumps(_Evil(marker)))
    train(load_pretrain_config(None, tiny_overrides(corpus, out, resume_from_checkpoint="auto", **common)))
    assert not marker.exists()
    assert (out / "final" / "model.safetensors").is_file()
    # only pickles (the old format): refused, not loaded
    (ckpt / "optimizer.json").unlink()
    with pytest.raises(KbioxlmError, match="old pickle format"):
        train(load_pretrain_config(None, tiny_overrides(corpus, out, resume_from_checkpoint=str(ckpt), **common)))
    assert not marker.exists()


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_weights(corpus, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "kbioxlm",
        "pretrain",
        "--config",
        str(ROOT / "configs" / "pretrain-tiny.yaml"),
        *tiny_overrides(corpus, out, max_steps=4, per_device_train_batch_size=4, num_threads=1, eval_at_start="false"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "kbioxlm_config.json").read_text())
    assert info["world_size"] == 2 and info["effective_batch_size"] == 8
    digests = info["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert (out / "final" / "model.safetensors").is_file()


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    from kbioxlm.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: m\noutput_dir: o\ntrain_files: a.jsonl\n")
    assert main(["pretrain", "--config", str(cfg), "warmup_step=10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key 'warmup_step'") and "\n" not in err
    assert main(["pretrain", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(cfg), f"train_files={tmp_path / 'none.jsonl'}"]) == 2
    assert "no such record file" in capsys.readouterr().err


def test_entity_records_read_as_monolingual_keep_spans(corpus):
    path = corpus["files"]["entity"]
    plain = load_pretrain_records(parse_train_files(str(path)))
    mono = load_pretrain_records(parse_train_files(f"{path}#mlm"))
    assert len(plain["entity"]) == len(mono["mlm"]) == 24 and not mono["entity"]
    assert all("task" not in r and r["entities"] for r in mono["mlm"])
    with pytest.raises(KbioxlmError, match="passage records cannot be read as monolingual"):
        load_pretrain_records(parse_train_files(f"{corpus['files']['passage']}#mlm"))
    with pytest.raises(KbioxlmError, match="only '#mlm'"):
        parse_train_files(f"{path}#fact")
