"""Throughput levers of pretraining, DeepSpeed resume and tracker checks, each by its behaviour.

Levers (docs/pretrain.md, "Throughput levers"): attention implementation, activation
checkpointing, fused AdamW, torch.compile, length bucketing, background data workers. DeepSpeed:
the accelerate config parses, the resume logic tells DeepSpeed's checkpoint layout from the plain
one, and (DeepSpeed installed) a ZeRO-2 run on CPU that stops, resumes and ends bit-identical to
an uninterrupted one. ``report_to`` naming a tracker whose package is missing is a config error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from kbioxlm.errors import KbioxlmError  # noqa: E402
from kbioxlm.pretrain.checkpoint import checkpoint_layout, check_layout, deepspeed_tag  # noqa: E402
from kbioxlm.pretrain.data import DataPosition, MixedSchedule, record_length  # noqa: E402
from kbioxlm.hub import load_tokenizer  # noqa: E402
from kbioxlm.pretrain.trainer import (  # noqa: E402
    _batch_stream,
    build_model,
    load_pretrain_config,
    kept_ids_of,
    make_collator,
    make_optimizer,
    train,
)

from test_pretrain_train import ROOT, corpus, load_final, tiny_overrides  # noqa: E402,F401

NO_DROPOUT = json.dumps(
    {
        "model_type": "xlm-roberta",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
)


def _model(corpus, tmp_path, **extra):
    from accelerate.utils import set_seed

    cfg = load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "unused", model_config=NO_DROPOUT, **extra))
    tok = load_tokenizer(cfg.tokenizer)
    set_seed(0)  # same seed -> same initial weights for every call
    return cfg, tok, build_model(cfg, tok, kept_ids_of(cfg, len(tok)))


def _batch(cfg, tok, corpus):
    recs = [json.loads(line) for line in corpus["files"]["docs"].read_text(encoding="utf-8").splitlines()[:6]]
    return make_collator(cfg, tok, kept_ids_of(cfg, len(tok)), 0)(recs)


# ------------------------------------------------------------------------------ model levers
def test_attn_implementation_reaches_the_encoder_and_keeps_outputs(corpus, tmp_path):
    cfg, tok, eager = _model(corpus, tmp_path, attn_implementation="eager")
    _, _, sdpa = _model(corpus, tmp_path, attn_implementation="sdpa")
    assert eager.encoder.config._attn_implementation == "eager"
    assert sdpa.encoder.config._attn_implementation == "sdpa"
    batch = _batch(cfg, tok, corpus)
    with torch.no_grad():
        a = eager.eval().mlm_logits(batch["input_ids"], batch["attention_mask"])
        b = sdpa.eval().mlm_logits(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with pytest.raises(KbioxlmError, match="attn_implementation"):
        _model(corpus, tmp_path, attn_implementation="no_such_kernel")


def test_gradient_checkpointing_same_gradients(corpus, tmp_path):
    cfg, tok, plain = _model(corpus, tmp_path)
    _, _, ckpt = _model(corpus, tmp_path, gradient_checkpointing="true")
    flag = (
        "is_activation_checkpointing"
        if hasattr(ckpt.encoder, "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    assert getattr(ckpt.encoder, flag) and not getattr(plain.encoder, flag)
    batch = _batch(cfg, tok, corpus)
    grads = []
    for model in (plain, ckpt):
        model.train()
        out = model(**batch)
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_fused_adamw_switch(corpus, tmp_path, fused):
    cfg, _, model = _model(corpus, tmp_path, fused_adamw=str(fused).lower())
    opt = make_optimizer(model, cfg, "cpu")
    assert bool(opt.defaults.get("fused")) is fused


def test_torch_compile_runs_compiled(corpus, tmp_path):
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    out = tmp_path / "compiled"
    train(
        load_pretrain_config(
            None, tiny_overrides(corpus, out, max_steps=2, eval_at_start="false", torch_compile="eager")
        )
    )
    assert torch._dynamo.utils.counters["stats"]["calls_captured"] > 0  # dynamo traced the model
    assert (out / "final" / "model.safetensors").is_file()
    state = load_final(out)
    assert not any("_orig_mod" in k for k in state)  # in-place compile: the saved names are the model's
    with pytest.raises(KbioxlmError, match="torch_compile backend"):
        load_pretrain_config(None, tiny_overrides(corpus, out, torch_compile="no_such_backend"))
    torch._dynamo.reset()


# ------------------------------------------------------------------------------ data levers
def _pools(n: int = 96):
    import random

    rnd = random.Random(0)
    recs = [{"id": str(i), "lang": "en", "text": "x " * rnd.randint(1, 200)} for i in range(n)]
    return {"mlm": recs, "entity": [], "fact": [], "passage": [], "align": []}


def _take(schedule, start, gb, n):
    it = schedule.global_batches(start, gb)
    return [next(it) for _ in range(n)]


def test_length_bucketing_regroups_by_length_and_resumes():
    pools = _pools()
    gb, k = 8, 4
    plain = MixedSchedule(pools, {"mlm": 1.0}, seed=3)
    bucketed = MixedSchedule(pools, {"mlm": 1.0}, seed=3, length_bucketing=k)
    a, b = _take(plain, DataPosition(), gb, 12), _take(bucketed, DataPosition(), gb, 12)
    # positions advance alike; each chunk of k batches holds the same records, regrouped
    assert [p for _, p in a] == [p for _, p in b]
    for c in range(3):
        ids = lambda xs, c=c: sorted(r["id"] for recs, _ in xs[c * k : (c + 1) * k] for r in recs)  # noqa: E731
        assert ids(a) == ids(b)
    # padding to the longest record of a batch wastes much less
    waste = lambda xs: sum(len(recs) * max(map(record_length, recs)) - sum(map(record_length, recs)) for recs, _ in xs)  # noqa: E731
    assert waste(b) < 0.5 * waste(a)
    # resuming in the middle of a chunk continues with exactly the same batches
    mid = b[5][1]
    again = _take(MixedSchedule(pools, {"mlm": 1.0}, seed=3, length_bucketing=k), mid, gb, 6)
    assert [[r["id"] for r in recs] for recs, _ in again] == [[r["id"] for r in recs] for recs, _ in b[6:12]]


def _stream(cfg, tok, kept, corpus, workers, n=6):
    from kbioxlm.pretrain.data import load_pretrain_records, normalise_mix, parse_train_files

    cfg = dataclasses.replace(cfg, dataloader_num_workers=workers)
    pools = load_pretrain_records(parse_train_files(cfg.train_files))
    schedule = MixedSchedule(pools, normalise_mix(cfg.mix, {t: len(v) for t, v in pools.items()}), int(cfg.seed))
    coll = make_collator(cfg, tok, kept, [int(cfg.seed), 0])
    it = _batch_stream(cfg, schedule, coll, DataPosition(), 8, 0, 8, torch.device("cpu"))
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("seeding,workers", [("stream", 1), ("batch", 2)])
def test_data_workers_give_the_same_batches(corpus, tmp_path, seeding, workers):
    cfg = load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "x", mask_seeding=seeding))
    tok = load_tokenizer(cfg.tokenizer)
    kept = kept_ids_of(cfg, len(tok))
    here, there = _stream(cfg, tok, kept, corpus, 0), _stream(cfg, tok, kept, corpus, workers)
    for (b0, p0, s0, n0), (b1, p1, s1, n1) in zip(here, there):
        assert p0 == p1 and n0 == n1
        assert b0.keys() == b1.keys() and all(torch.equal(b0[k], b1[k]) for k in b0)
        if seeding == "stream":
            assert s0 == s1  # the state to checkpoint after this batch, as collated in-process
    with pytest.raises(KbioxlmError, match="mask_seeding=batch"):
        load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "x", dataloader_num_workers=2))


def test_run_with_a_data_worker_resumes_exactly(corpus, tmp_path):
    """The checkpoint holds the masking state of the last batch *used*, not the worker's."""
    common = dict(max_steps=4, save_steps=2, eval_at_start="false", dataloader_num_workers=1, length_bucketing=2)
    full, split = tmp_path / "full", tmp_path / "split"
    train(load_pretrain_config(None, tiny_overrides(corpus, full, **common)))
    train(load_pretrain_config(None, tiny_overrides(corpus, split, stop_at_step=2, **common)))
    train(load_pretrain_config(None, tiny_overrides(corpus, split, resume_from_checkpoint="auto", **common)))
    a, b = load_final(full), load_final(split)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ trackers
def test_report_to_missing_package_fails_at_config_time(corpus, tmp_path, capsys):
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    missing = sorted(set(LOGGER_TYPE_TO_CLASS) - {str(t) for t in get_available_trackers()})
    if not missing:
        pytest.skip("every tracker accelerate knows is installed here")
    name = "wandb" if "wandb" in missing else missing[0]
    with pytest.raises(KbioxlmError, match=f"report_to '{name}' needs the {name} package"):
        load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "x", report_to=name))
    with pytest.raises(KbioxlmError, match="unknown"):
        load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "x", report_to="nosuchtracker"))
    assert (
        load_pretrain_config(None, tiny_overrides(corpus, tmp_path / "x", report_to="tensorboard")).report_to
        == "tensorboard"
    )

    from kbioxlm.cli import main

    rc = main(
        [
            "pretrain",
            "--config",
            str(ROOT / "configs" / "pretrain-tiny.yaml"),
            *tiny_overrides(corpus, tmp_path / "cli", report_to=name),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and name in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "cli").exists()


# ------------------------------------------------------------------------------ DeepSpeed
DS_CONFIG = ROOT / "configs" / "accelerate-deepspeed-zero2.yaml"


def test_deepspeed_accelerate_config_loads():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(DS_CONFIG))
    assert cfg.distributed_type == DistributedType.DEEPSPEED
    assert cfg.deepspeed_config["zero_stage"] == 2


def _ds_layout(d: Path, tag: str = "pytorch_model", latest: bool = True) -> Path:
    (d / tag).mkdir(parents=True)
    (d / tag / "mp_rank_00_model_states.pt").write_bytes(b"x")
    (d / tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"x")
    if latest:
        (d / "latest").write_text(tag)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": 2, "data_position": {"epoch": 0, "index": 16}}))
    return d


def test_deepspeed_checkpoint_layout_is_recognised(tmp_path):
    acc = _ds_layout(tmp_path / "acc")
    raw = _ds_layout(tmp_path / "raw", tag="global_step2", latest=False)
    assert deepspeed_tag(acc) == "pytorch_model" and deepspeed_tag(raw) == "global_step2"
    assert checkpoint_layout(acc) == checkpoint_layout(raw) == "deepspeed"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "optimizer.json").write_text("{}")
    assert checkpoint_layout(plain) == "kbioxlm"
    assert check_layout(acc, deepspeed=True) == "deepspeed"
    with pytest.raises(KbioxlmError, match="DeepSpeed checkpoint .*resume it under DeepSpeed"):
        check_layout(acc, deepspeed=False)
    with pytest.raises(KbioxlmError, match="written without DeepSpeed"):
        check_layout(plain, deepspeed=True)
    # an interrupted save: `latest` names a tag that holds no model states
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "latest").write_text("global_step9")
    with pytest.raises(KbioxlmError, match="incomplete DeepSpeed checkpoint"):
        deepspeed_tag(broken)


def test_plain_run_refuses_a_deepspeed_checkpoint_in_one_line(corpus, tmp_path):
    out = tmp_path / "run"
    _ds_layout(out / "checkpoints" / "checkpoint-2")
    with pytest.raises(KbioxlmError, match="DeepSpeed checkpoint"):
        train(load_pretrain_config(None, tiny_overrides(corpus, out, max_steps=4, resume_from_checkpoint="auto")))


@pytest.mark.slow
def test_deepspeed_zero2_run_resumes_exactly(corpus, tmp_path):
    """Under `accelerate launch` with the ZeRO-2 config (DeepSpeed's CPU backend here): stop at
    step 2, resume, and end with the weights of an uninterrupted run."""
    pytest.importorskip("deepspeed", reason="DeepSpeed not installed (pip install -e '.[deepspeed]')")
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not on PATH")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def run(out: Path, **extra) -> None:
        cmd = [
            launcher,
            "launch",
            "--config_file",
            str(DS_CONFIG),
            "--num_processes",
            "1",
            "-m",
            "kbioxlm",
            "pretrain",
            "--config",
            str(ROOT / "configs" / "pretrain-tiny.yaml"),
            *tiny_overrides(corpus, out, max_steps=4, save_steps=2, eval_at_start="false", num_threads=1, **extra),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]

    split, full = tmp_path / "split", tmp_path / "full"
    run(split, stop_at_step=2)
    ckpt = split / "checkpoints" / "checkpoint-2"
    assert deepspeed_tag(ckpt) == "pytorch_model" and (ckpt / "trainer_state.json").is_file()
    run(split, resume_from_checkpoint="auto")
    run(full)
    a, b = load_final(full), load_final(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((split / "kbioxlm_config.json").read_text())
    assert info["global_step"] == 4
