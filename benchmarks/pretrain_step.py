"""Pretraining step time and peak memory: the toolkit's model vs plain ``XLMRobertaForMaskedLM``.

Both sides are XLM-R-base sized (random weights from a config equal to xlm-roberta-base's:
250,002 ids, hidden 768, 12 layers, 12 heads, FF 3072, 514 positions), batch 8 × 128 tokens of
real EN+ZH text from ../shared, 15% of tokens masked (80/10/10), CPU, ``torch.set_num_threads``.
A step is forward + backward + AdamW step; warm-up steps are excluded. Each side runs in a fresh
subprocess and reports its own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).

(a) toolkit, the path it takes for EN+ZH:
    * ``vocab reduce`` counts ids over the EN+ZH text (padded to the paper's 37,030 with the
      tokenizer's most probable unseen pieces) → reduced output head of 37,030 rows;
    * ``vocab trim`` input vocabulary: the character closure of those pieces plus Latin-1, Greek,
      CJK and symbols (exact tokenization for such text; ``kbioxlm export --full-vocab-from``
      restores the 250,002-id vocabulary);
    * logits only at masked positions; bf16 autocast when the CPU supports it; fused AdamW.
    ``--no-trim`` keeps the full 250,002-id input vocabulary (reduced head only).
(b) baseline: ``XLMRobertaForMaskedLM`` with the standard full-vocabulary MLM loss, fp32,
    ``torch.optim.AdamW`` defaults.

Both children run with ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-wait-policy``): on a shared machine
OpenMP's default spin-waiting for a descheduled partner thread tripled the toolkit's step time.

Run: ``nice -n 10 python benchmarks/pretrain_step.py`` (needs ../shared, or KBIOXLM_SHARED).
Last line: ``time_ratio=<a/b> mem_ratio=<a/b>``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KBIOXLM_SHARED", ROOT.parent / "shared"))
BASE = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
FULL_VOCAB = 250002
PAPER_KEPT = 37030


def _texts() -> tuple[list[str], list[str]]:
    en, zh = [], []
    for rec in json.loads((SHARED / "data/corpora/en/ori_pqal.json").read_text(encoding="utf-8")).values():
        en.extend(rec["CONTEXTS"])
        en.append(rec["LONG_ANSWER"])
    for name in ("cmeee_dev.json", "cmeee_test.json"):
        zh.extend(r["text"] for r in json.loads((SHARED / "data/corpora/zh" / name).read_text(encoding="utf-8")))
    for line in (SHARED / "data/corpora/zh/medical_dialogue_internal_medicine.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            zh.append(line.strip())
    return en, zh


def prepare(work: Path, batch: int, length: int, seed: int, trim: bool) -> dict:
    """Count/select/trim with the toolkit's own functions; build one masked batch; save both."""
    import torch
    from transformers import AutoTokenizer

    from kbioxlm.pretrain.vocab import count_token_frequencies, plan_trim, select_kept_ids

    tok_dir = SHARED / "tokenizers/xlm-roberta-base"
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    en, zh = _texts()
    corpus = work / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as fh:
        for i, t in enumerate(en + zh):
            fh.write(json.dumps({"id": str(i), "lang": "en" if i < len(en) else "zh", "text": t}, ensure_ascii=False) + "\n")
    counts = count_token_frequencies(tok, [corpus], progress=False)
    kept = select_kept_ids(counts, tok, min_size=PAPER_KEPT)
    tok_json = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    keep = plan_trim(tok_json, kept) if trim else list(range(FULL_VOCAB))

    g = torch.Generator().manual_seed(seed)
    rows = []
    for source in (en, zh):
        stream: list[int] = []
        for t in source[: 400]:
            stream.extend(tok(t, add_special_tokens=False)["input_ids"])
        for b in range(batch // 2):
            rows.append([0] + stream[b * (length - 2) : (b + 1) * (length - 2)] + [2])
    input_ids = torch.tensor(rows)
    labels = torch.full_like(input_ids, -100)
    special = (input_ids == 0) | (input_ids == 2)
    masked = (torch.rand(input_ids.shape, generator=g) < 0.15) & ~special
    labels[masked] = input_ids[masked]
    roll = torch.rand(input_ids.shape, generator=g)
    inputs = input_ids.clone()
    inputs[masked & (roll < 0.8)] = tok.mask_token_id
    rand_pos = masked & (roll >= 0.8) & (roll < 0.9)
    inputs[rand_pos] = torch.tensor(kept)[torch.randint(len(kept), (int(rand_pos.sum()),), generator=g)]
    # toolkit side: ids in the trimmed vocabulary (identity when not trimming)
    to_trim = torch.full((FULL_VOCAB,), -1, dtype=torch.long)
    to_trim[torch.tensor(keep)] = torch.arange(len(keep))
    assert bool((to_trim[inputs] >= 0).all()), "batch token outside the trimmed vocabulary"
    labels_t = torch.where(labels >= 0, to_trim[labels.clamp(min=0)], labels)
    data = {
        "full": {"input_ids": inputs, "labels": labels},
        "toolkit": {"input_ids": to_trim[inputs], "labels": labels_t, "kept_ids": to_trim[torch.tensor(kept)].tolist(), "vocab_size": len(keep)},
    }
    torch.save(data, work / "batch.pt")
    return {"kept": len(kept), "seen": len(counts), "input_vocab": len(keep), "masked": int(masked.sum())}


def run_side(side: str, work: Path, steps: int, warmup: int, threads: int, bf16: str) -> None:
    """Child process: build one side, time ``steps`` steps after ``warmup``, print a JSON line."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = torch.load(work / "batch.pt")
    if side == "toolkit":
        from kbioxlm.pretrain import TASK_IDS
        from kbioxlm.pretrain.model import KnowledgeAnchoredModel

        d = data["toolkit"]
        config = XLMRobertaConfig(vocab_size=d["vocab_size"], **BASE)
        model = KnowledgeAnchoredModel.from_config(config, kept_ids=d["kept_ids"])
        use_bf16 = bf16 == "on" or (bf16 == "auto" and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
        except (RuntimeError, TypeError):
            opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, foreach=False)
        n = d["input_ids"].shape[0]
        batch = {
            "input_ids": d["input_ids"],
            "attention_mask": torch.ones_like(d["input_ids"]),
            "mlm_labels": d["labels"],
            "task_ids": torch.tensor([TASK_IDS["mlm"], TASK_IDS["entity"]] * (n // 2)),
        }
    else:
        d = data["full"]
        config = XLMRobertaConfig(vocab_size=FULL_VOCAB, **BASE)
        model = XLMRobertaForMaskedLM(config)
        use_bf16 = False
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
        batch = {"input_ids": d["input_ids"], "attention_mask": torch.ones_like(d["input_ids"]), "labels": d["labels"]}
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    times, cpu = [], []
    for step in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": side, "step_s": sum(times) / len(times), "min_step_s": min(times), "cpu_s": sum(cpu) / len(cpu), "peak_mb": peak_mb,
                      "params": n_params, "bf16": use_bf16, "loss": float(loss)}))


def _available_mb() -> float:
    """MemAvailable from /proc/meminfo (Linux), or infinity where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _wait_for_memory(need_mb: float, max_wait_s: float) -> None:
    """On a shared machine, start a side only when it will fit (else the OOM killer ends it)."""
    deadline = time.time() + max_wait_s
    while _available_mb() < need_mb and time.time() < deadline:
        time.sleep(10)
    if _available_mb() < need_mb:
        print(f"warning: only {_available_mb():.0f} MB available, {need_mb:.0f} MB wanted", flush=True)


NEED_MB = {"toolkit": 5500, "plain": 9000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto", help="toolkit side autocast")
    ap.add_argument("--no-trim", action="store_true", help="toolkit side keeps the full input vocabulary")
    ap.add_argument("--wait-memory", type=float, default=0, metavar="S",
                    help="wait up to S seconds for enough free memory before each side (shared machines)")
    ap.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default="passive",
                    help="OMP_WAIT_POLICY for both sides (default passive: on a shared machine, spinning "
                    "OpenMP threads waiting for a descheduled partner tripled the toolkit's step time)")
    ap.add_argument("--side", choices=("toolkit", "plain"), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        run_side(args.side, Path(args.work), args.steps, args.warmup, args.threads, args.bf16)
        return
    if not (SHARED / "tokenizers/xlm-roberta-base/tokenizer.json").is_file():
        sys.exit(f"needs the shared folder at {SHARED} (set KBIOXLM_SHARED)")
    with tempfile.TemporaryDirectory(prefix="kbioxlm-bench-") as tmp:
        work = Path(tmp)
        info = prepare(work, args.batch, args.length, seed=0, trim=not args.no_trim)
        print(f"setup: {info['seen']} ids seen in the EN+ZH text, {info['kept']} kept (output head), "
              f"input vocabulary {info['input_vocab']}, {info['masked']} masked of {args.batch * args.length} tokens", flush=True)
        results = {}
        load_start = os.getloadavg()[0]
        for side in ("toolkit", "plain"):
            if args.wait_memory:
                _wait_for_memory(NEED_MB[side], args.wait_memory)
            cmd = [sys.executable, __file__, "--side", side, "--work", str(work), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--bf16", args.bf16]
            env = dict(os.environ)
            if args.omp_wait_policy != "default":
                env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                why = " (killed: out of memory?)" if proc.returncode in (-9, 137) else ""
                sys.exit(f"{side} side failed with exit status {proc.returncode}{why}:\n{proc.stderr[-3000:]}")
            results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[side]
            label = "(a) toolkit" if side == "toolkit" else "(b) plain XLMRobertaForMaskedLM"
            print(f"{label}: {r['step_s']:.2f} s/step (min {r['min_step_s']:.2f}; CPU {r['cpu_s']:.2f} s), peak RSS {r['peak_mb']:.0f} MB, "
                  f"{r['params'] / 1e6:.1f} M params, bf16={r['bf16']}, loss {r['loss']:.2f}", flush=True)
    a, b = results["toolkit"], results["plain"]
    # Other processes on the machine stretch wall time (each parallel op waits for a descheduled
    # thread); CPU time per step is the less contention-sensitive figure, printed for reference.
    print(f"OMP_WAIT_POLICY={args.omp_wait_policy}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end ({os.cpu_count()} CPUs); "
          f"cpu_time_ratio={a['cpu_s'] / b['cpu_s']:.3f}")
    print(f"time_ratio={a['step_s'] / b['step_s']:.3f} mem_ratio={a['peak_mb'] / b['peak_mb']:.3f}")


if __name__ == "__main__":
    main()
