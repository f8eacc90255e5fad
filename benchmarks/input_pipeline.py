"""Input pipeline of pretraining: collation plus loading, examples/s of one worker at 128 and 512 tokens.

What a training step waits for when the data is not ready: the mixed schedule picks a global
batch of records, this process's slice is tokenized and masked by ``KnowledgeCollator``, and
(with ``dataloader_num_workers >= 1``) the tensors cross a process boundary. Measured on records
built by the toolkit's corpus stage (``pretrain_records.py``: real HPO KB, PubMedQA + CMeEE
Documents, entity/fact/passage records; or the demo's synthetic world), with the real XLM-R
tokenizer, batch 32, the default task mix.

Per length, three figures:

* ``in-process``: the trainer's ``CollatedBatches`` iterated in this process (what
  ``dataloader_num_workers: 0`` runs between steps); examples per CPU second of this process
  (every thread counted, so a busy shared machine does not inflate or deflate it) and per
  wall-clock second;
* ``1 worker``: the trainer's own DataLoader path (``dataloader_num_workers: 1``, one background
  process), examples per wall-clock second as the consumer sees them (includes pickling through
  the worker queue).

The target is at least 225 examples/s per worker at 128 tokens. Last line:
``collate_ex_per_s_per_worker=<in-process examples per CPU second at 128 tokens>``.

Run: ``nice -n 10 python benchmarks/input_pipeline.py [--batches 40] [--records-source real|demo]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_records  # noqa: E402

TOKENIZER = pretrain_records.SHARED / "tokenizers/xlm-roberta-base"


def measure(pools: dict, tokenizer: object, length: int, batches: int, batch: int, workers: int, seed: int = 0) -> dict:
    """Examples/s of the trainer's batch stream at ``length`` tokens (CPU and wall clock)."""
    import torch

    from kbioxlm.pretrain.data import DataPosition, MixedSchedule, normalise_mix
    from kbioxlm.pretrain.trainer import PretrainConfig, _batch_stream, make_collator

    cfg = PretrainConfig(max_length=length, seed=seed, dataloader_num_workers=workers)
    mix = normalise_mix(cfg.mix, {t: len(v) for t, v in pools.items()})
    schedule = MixedSchedule(pools, mix, seed)
    coll = make_collator(cfg, tokenizer, None, [seed, 0])
    it = _batch_stream(cfg, schedule, coll, DataPosition(), batch, 0, batch, torch.device("cpu"))
    next(it)  # warm-up: jieba's dictionary, the worker's start
    n_tokens = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        b = next(it)[0]
        n_tokens += int(b["attention_mask"].sum()) if "attention_mask" in b else 0
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = batches * batch
    return {"ex_per_s_cpu": n / cpu, "ex_per_s_wall": n / wall, "tokens_per_example": n_tokens / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--records-source", choices=("auto", "real", "demo"), default="auto")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "kbioxlm-bench"), help="record cache")
    ap.add_argument("--tokenizer", default=str(TOKENIZER))
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one worker = one core: no tokenizer threads
    if not Path(args.tokenizer, "tokenizer.json").is_file():
        sys.exit(f"needs the XLM-R tokenizer at {args.tokenizer} (--tokenizer, or KBIOXLM_SHARED)")
    import logging

    logging.disable(logging.INFO)
    from kbioxlm.hub import load_tokenizer

    files = pretrain_records.build_records(Path(args.workdir), args.records_source)
    pools = pretrain_records.load_pools(files)
    tok = load_tokenizer(args.tokenizer)
    print(
        "records: "
        + ", ".join(f"{t} {len(v)}" for t, v in pools.items() if v)
        + f"; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    per_worker = {}
    for length in (int(x) for x in args.lengths.split(",")):
        here = measure(pools, tok, length, args.batches, args.batch, workers=0)
        one = measure(pools, tok, length, args.batches, args.batch, workers=1)
        per_worker[length] = here["ex_per_s_cpu"]
        print(
            f"{length} tokens ({here['tokens_per_example']:.0f} real tokens/example): in-process {here['ex_per_s_cpu']:.0f} "
            f"examples/CPU-s ({here['ex_per_s_wall']:.0f}/wall-s); 1 worker {one['ex_per_s_wall']:.0f} examples/wall-s",
            flush=True,
        )
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    print(f"collate_ex_per_s_per_worker={per_worker.get(128, next(iter(per_worker.values()))):.0f}")


if __name__ == "__main__":
    main()
