"""The pretraining benchmarks' smoke modes (CPU, tiny model): they run, print their contract line,
and count model FLOPs from the config as the model really is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from test_pretrain_train import ROOT, corpus  # noqa: E402,F401

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_pretrain  # noqa: E402


def _last_line(proc: subprocess.CompletedProcess) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    return dict(kv.split("=", 1) for kv in last.split())


def test_gpu_pretrain_smoke_on_cpu(corpus, tmp_path):
    files = ",".join(str(p) for p in corpus["files"].values())
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_pretrain.py"),
        "--size",
        "tiny",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--batch",
        "8",
        "--length",
        "48",
        "--records",
        files,
        "--tokenizer",
        corpus["tokenizer"],
        "--workdir",
        str(tmp_path),
        "--set",
        "dataloader_num_workers=1",
        "--json",
        str(tmp_path / "r.json"),
    ]
    kv = _last_line(subprocess.run(cmd, capture_output=True, text=True, timeout=600))
    assert set(kv) == {"examples_per_s", "tokens_per_s", "tflops", "mfu", "peak_mem_gb", "data_wait_share"}
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["examples_per_s"] > 0 and r["tflops"] > 0 and 0 <= r["data_wait_share"] < 1
    assert r["mfu"] is None and kv["mfu"] == "n/a"  # no peak known for a CPU without --peak-tflops
    assert r["levers"] == ["dataloader_num_workers=1"]


def test_flop_count_matches_the_built_model(corpus):
    """The per-token weight count in ``step_flops`` is the encoder's real matmul weights."""
    from transformers import AutoConfig

    from kbioxlm.pretrain.model import KnowledgeAnchoredModel

    mc = dict(gpu_pretrain.TINY)
    model = KnowledgeAnchoredModel.from_config(
        AutoConfig.for_model(mc.pop("model_type"), vocab_size=1000, **mc), kept_ids=list(range(100))
    )
    layer_weights = sum(
        p.numel() for n, p in model.encoder.encoder.named_parameters() if n.endswith(".weight") and p.ndim == 2
    )
    ids = torch.ones(2, 10, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    labels[0, 3] = labels[1, 5] = 7
    flops = gpu_pretrain.step_flops(gpu_pretrain.TINY, {"input_ids": ids, "mlm_labels": labels}, head_rows=100)
    h, n_layers = gpu_pretrain.TINY["hidden_size"], gpu_pretrain.TINY["num_hidden_layers"]
    head = model.mlm_head.dense.weight.numel() + model.mlm_head.decoder.weight.numel()
    assert flops == 6 * layer_weights * 20 + 12 * n_layers * 10 * h * 20 + 6 * head * 2


def test_peak_lookup_by_gpu_name():
    assert gpu_pretrain.peak_tflops("NVIDIA H200", "bf16") == 989
    assert gpu_pretrain.peak_tflops("NVIDIA H100 PCIe", "bf16") == 756
    assert gpu_pretrain.peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert gpu_pretrain.peak_tflops("Some Unknown GPU", "bf16") is None


def test_input_pipeline_prints_its_rate(tmp_path, xlmr_tokenizer_path):
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "input_pipeline.py"),
        "--records-source",
        "demo",
        "--batches",
        "2",
        "--lengths",
        "128",
        "--workdir",
        str(tmp_path),
        "--tokenizer",
        str(xlmr_tokenizer_path),
    ]
    kv = _last_line(subprocess.run(cmd, capture_output=True, text=True, timeout=600))
    assert list(kv) == ["collate_ex_per_s_per_worker"] and float(kv["collate_ex_per_s_per_worker"]) > 0
