"""Continued-pretraining throughput as the toolkit runs it: examples/s, tokens/s, TFLOP/s, MFU,
peak memory and the share of step time spent waiting for data.

The model is built by the trainer's own ``build_model`` from a config (``--size base``: XLM-R-base
dimensions, 250,002 input ids, random weights, since no model hub is reachable; ``--size tiny``: a
2-layer encoder for the CPU smoke test), with the reduced output head (``vocab reduce``'s
selection over the records, padded to the paper's 37,030 ids; ``--full-head`` keeps all ids),
all four tasks from records built by the corpus stage (``pretrain_records.py``, or ``--records``),
the real collator through the trainer's batch stream (``dataloader_num_workers``, length
bucketing), the trainer's AdamW (``fused_adamw``) and accelerate's autocast: one step is what
``kbioxlm pretrain`` does per optimizer step (forward, backward, clipping, AdamW, zero_grad).

Throughput levers are the trainer's config keys (``--set key=value``, repeatable), e.g.
``--set attn_implementation=sdpa --set torch_compile=true --set dataloader_num_workers=1
--set length_bucketing=8``; ``--bf16`` sets ``mixed_precision=bf16``.

Model FLOPs per step are counted from the config, on the padded batch the GPU computes: per
token, 6 x (encoder weights without embeddings) + 12 x layers x sequence length x hidden (the
attention score and value products, forward and backward), plus 6 x (MLM head weights) per
masked token and the pair head (negligible). Achieved TFLOP/s = FLOPs / step time; MFU = that /
the device's dense peak for the precision used (``--peak-tflops``, or looked up from the GPU's
name; TF32 counts for fp32 only with ``--tf32``). Data wait = time blocked in ``next(batches)``.
Timed steps follow ``--warmup`` untimed ones; on CUDA each step ends with a synchronize.

Run: ``python benchmarks/gpu_pretrain.py --size base --bf16 --set attn_implementation=sdpa``
(``benchmarks/gpu_run.sh`` is the prepared GPU script). Smoke: ``--size tiny --device cpu
--steps 3``. Last line: ``examples_per_s=.. tokens_per_s=.. tflops=.. mfu=.. peak_mem_gb=..
data_wait_share=..``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_records  # noqa: E402

BASE = {
    "model_type": "xlm-roberta",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
}
TINY = {
    "model_type": "xlm-roberta",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}
PAPER_KEPT = 37030
# Dense peak TFLOP/s per GPU (vendor data sheets): (bf16/fp16 tensor, tf32 tensor, fp32 non-tensor).
PEAKS = {
    "H200": (989, 494, 67),
    "H100 SXM": (989, 494, 67),
    "H100 PCIe": (756, 378, 51),
    "H100": (989, 494, 67),
    "A100": (312, 156, 19.5),
    "L40S": (362, 183, 91.6),
    "A6000": (155, 77, 38.7),
    "A5000": (111, 56, 27.8),
    "A10": (125, 62.5, 31.2),
    "L4": (121, 60, 30.3),
    "V100": (125, 0, 15.7),
    "T4": (65, 0, 8.1),
}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak for ``precision`` (bf16 | tf32 | fp32) of the first matching GPU name."""
    col = {"bf16": 0, "tf32": 1, "fp32": 2}[precision]
    for key in sorted(PEAKS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAKS[key][col] or None
    return None


def step_flops(mc: dict[str, Any], batch: dict[str, Any], head_rows: int) -> float:
    """Training FLOPs of one micro-batch (forward + backward = 3 x forward), from the config."""
    h, n_layers, ff = mc["hidden_size"], mc["num_hidden_layers"], mc["intermediate_size"]
    per_layer = 4 * h * h + 2 * h * ff  # attention projections + feed-forward weights
    b, t = batch["input_ids"].shape if "input_ids" in batch else (0, 0)
    tokens = b * t
    flops = 6 * n_layers * per_layer * tokens + 12 * n_layers * t * h * tokens
    masked = int((batch["mlm_labels"] != -100).sum()) if "mlm_labels" in batch else 0
    flops += 6 * (h * h + h * head_rows) * masked
    for side in ("align_a_ids", "align_b_ids"):
        if side in batch:
            ab, at = batch[side].shape
            flops += 6 * n_layers * per_layer * ab * at + 12 * n_layers * at * h * ab * at
    return float(flops)


def kept_ids(files: dict[str, list[Path]], tokenizer: Any) -> list[int]:
    from kbioxlm.pretrain.vocab import count_token_frequencies, select_kept_ids

    counts = count_token_frequencies(tokenizer, [p for ps in files.values() for p in ps], progress=False)
    return select_kept_ids(counts, tokenizer, min_size=min(PAPER_KEPT, len(tokenizer)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator

    from kbioxlm.engine import micro_step, reset_accelerate_state
    from kbioxlm.hub import load_tokenizer
    from kbioxlm.pretrain.data import (
        DataPosition,
        MixedSchedule,
        load_pretrain_records,
        normalise_mix,
        parse_train_files,
    )
    from kbioxlm.pretrain.trainer import _batch_stream, build_model, load_pretrain_config, make_collator, make_optimizer

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.records:
        files = {"given": [Path(p) for p in args.records.split(",")]}
    else:
        files = pretrain_records.build_records(work, args.records_source)
    tok = load_tokenizer(args.tokenizer)
    mc = dict(BASE if args.size == "base" else TINY)
    import yaml

    # YAML, not JSON: the trainer parses overrides as YAML, which reads JSON's "1e-05" as a string.
    overrides = [
        f"model_config={yaml.safe_dump(mc, default_flow_style=True).strip()}",
        f"tokenizer={args.tokenizer}",
        f"output_dir={work / 'unused'}",
        "train_files=" + ",".join(str(p) for ps in files.values() for p in ps),
        f"max_length={args.length}",
        f"per_device_train_batch_size={args.batch}",
        f"gradient_accumulation_steps={args.accumulation}",
        "report_to=none",
    ]
    if args.bf16:
        overrides.append("mixed_precision=bf16")
    cfg = load_pretrain_config(None, overrides + list(args.set))
    kept = None if args.full_head else kept_ids(files, tok)
    device_wanted = args.device
    has_cuda = torch.cuda.is_available()
    if device_wanted == "cuda" and not has_cuda:
        sys.exit("--device cuda: no CUDA device here")
    on_cuda = has_cuda and device_wanted != "cpu"
    if args.tf32 and on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    reset_accelerate_state()
    acc = Accelerator(
        cpu=not on_cuda,
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=args.accumulation,
        step_scheduler_with_optimizer=False,
    )
    torch.manual_seed(0)
    model = build_model(cfg, tok, kept)
    model.train()
    opt = make_optimizer(model, cfg, acc.device.type)
    if cfg.torch_compile:
        model.compile(backend="inductor" if cfg.torch_compile is True else str(cfg.torch_compile))
    model, opt = acc.prepare(model, opt)
    pools = load_pretrain_records(parse_train_files(cfg.train_files))
    schedule = MixedSchedule(
        pools,
        normalise_mix(cfg.mix, {t: len(v) for t, v in pools.items()}),
        0,
        length_bucketing=int(cfg.length_bucketing),
    )
    coll = make_collator(cfg, tok, kept, [0, 0])
    batches = _batch_stream(cfg, schedule, coll, DataPosition(), args.batch, 0, args.batch, acc.device)
    head_rows = len(kept) if kept else len(tok)

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    wait = total = flops = 0.0
    examples = tokens = 0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync()
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            wait = total = flops = 0.0
            examples = tokens = 0
        t0 = time.perf_counter()
        for _ in range(args.accumulation):
            w0 = time.perf_counter()
            host, _, _, n = next(batches)
            wait += time.perf_counter() - w0
            out, _ = micro_step(acc, model, opt, host, cfg.max_grad_norm)
            examples += n
            tokens += int(host["input_ids"].numel()) if "input_ids" in host else 0
            flops += step_flops(mc, host, head_rows)
        sync()
        total += time.perf_counter() - t0
    loss = float(out.loss.detach().float())
    precision = "bf16" if cfg.mixed_precision == "bf16" else ("tf32" if args.tf32 else "fp32")
    name = torch.cuda.get_device_name() if on_cuda else "cpu"
    peak = args.peak_tflops or (peak_tflops(name, precision) if on_cuda else None)
    tflops = flops / total / 1e12
    mem_gb = (
        torch.cuda.max_memory_allocated() / 2**30
        if on_cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "device": name,
        "size": args.size,
        "precision": precision,
        "batch": args.batch,
        "length": args.length,
        "steps": args.steps,
        "head_rows": head_rows,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "levers": list(args.set),
        "examples_per_s": examples / total,
        "tokens_per_s": tokens / total,
        "tflops": tflops,
        "peak_tflops": peak,
        "mfu": tflops / peak if peak else None,
        "peak_mem_gb": mem_gb,
        "mem_kind": "max_memory_allocated" if on_cuda else "peak RSS",
        "data_wait_share": wait / total,
        "loss": loss,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("base", "tiny"), default="base")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--batch", type=int, default=32, help="per-device micro-batch")
    ap.add_argument("--accumulation", type=int, default=1)
    ap.add_argument("--length", type=int, default=128, help="max_length")
    ap.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="fp32 matmuls on TF32 tensor cores (CUDA)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a pretrain config key (repeatable)"
    )
    ap.add_argument("--full-head", action="store_true", help="all 250,002 output ids instead of the reduced head")
    ap.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: looked up from the GPU name)")
    ap.add_argument("--records", help="comma-separated record files (default: built by the corpus stage)")
    ap.add_argument("--records-source", choices=("auto", "real", "demo"), default="auto")
    ap.add_argument("--tokenizer", default=str(pretrain_records.SHARED / "tokenizers/xlm-roberta-base"))
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "kbioxlm-bench"))
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args()
    if not Path(args.tokenizer, "tokenizer.json").is_file():
        sys.exit(f"needs the XLM-R tokenizer at {args.tokenizer} (--tokenizer, or KBIOXLM_SHARED)")
    import logging

    logging.disable(logging.INFO)
    r = run(args)
    print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(r) + "\n", encoding="utf-8")
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    print(
        f"{r['device']} {r['size']} {r['precision']} batch {r['batch']} x {r['length']}: {r['examples_per_s']:.1f} examples/s, "
        f"{r['tflops']:.2f} TFLOP/s (peak {fmt(r['peak_tflops'], '.0f')}), data wait {100 * r['data_wait_share']:.1f}% of step time"
    )
    print(
        f"examples_per_s={r['examples_per_s']:.2f} tokens_per_s={r['tokens_per_s']:.0f} tflops={r['tflops']:.3f} "
        f"mfu={fmt(r['mfu'], '.4f')} peak_mem_gb={r['peak_mem_gb']:.2f} data_wait_share={r['data_wait_share']:.4f}"
    )


if __name__ == "__main__":
    main()
