"""NER inference throughput (sentences/s) with CRF decoding: batched vs a per-sentence loop, same run.

    python benchmarks/ner_inference.py [--model DIR] [--test FILE] [--limit N] [--batch-size 64] [--threads 2]

``--model`` is an encoder folder (default: the shared multilingual-e5-small-zhen; the NER head is
random, which does not change the cost) or a folder saved by ``kbioxlm finetune --save-model``
(loaded with ``kbioxlm.tasks.predict.load_finetuned``). ``--test`` defaults to the ADE Chinese test set.

Both paths run the same model on the same sentences: the toolkit path encodes length-sorted batches
and decodes each batch with one vectorised Viterbi (ConstrainedCRF.decode); the baseline encodes and decodes one sentence
at a time. A second pair of timings isolates the decoder (same emissions, batched vs per-sentence).
Prints ratios; the last line is ``sentences_per_s=... speedup_vs_loop=... decode_speedup=...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KBIOXLM_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHARED / "models" / "multilingual-e5-small-zhen"))
    ap.add_argument("--tokenizer")
    ap.add_argument(
        "--test", default=str(SHARED / "data" / "kbioxlm-release" / "ner" / "ade" / "eng_to_zh" / "test.txt")
    )
    ap.add_argument("--limit", type=int, default=200, help="sentences to time (0 = all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from kbioxlm.schema import is_unspaced
    from kbioxlm.tasks.ner import (
        EncoderCRFTagger,
        build_label_list,
        collate_ner,
        decode_words,
        encode_ner,
        entity_types_of,
    )
    from kbioxlm.tasks.finetune import MODEL_MARKER
    from kbioxlm.tasks.predict import load_finetuned
    from kbioxlm.tasks.readers import read_ner

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    recs = read_ner(args.test)
    if args.limit:
        recs = recs[: args.limit]
    if (Path(args.model) / MODEL_MARKER).is_file():
        saved = load_finetuned(args.model)
        model, labels = saved.model, list(saved.model.labels)
        tok = AutoTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else saved.tokenizer
    else:
        labels = build_label_list(entity_types_of([r["tags"] for r in recs]))
        tok = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
        model = EncoderCRFTagger.from_pretrained(args.model, labels)
    model.eval()
    l2i = {t: i for i, t in enumerate(labels)}
    encs = encode_ner(tok, recs, l2i, args.max_length, is_unspaced)
    n_words = [len(r["tokens"]) for r in recs]
    pad = tok.pad_token_id

    def run_batched() -> list[list[str]]:
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].input_ids))
        preds: list = [None] * len(encs)
        for s in range(0, len(order), args.batch_size):
            idx = order[s : s + args.batch_size]
            b = collate_ner([encs[i] for i in idx], pad, with_labels=False)
            for i, p in zip(idx, model.decode(**b)):
                preds[i] = p
        return decode_words(encs, preds, labels, n_words)

    def run_loop() -> list[list[str]]:
        preds = [model.decode(**collate_ner([e], pad, with_labels=False))[0] for e in encs]
        return decode_words(encs, preds, labels, n_words)

    with torch.inference_mode():
        run_batched()  # warm-up (allocations, lazy init)
        t0 = time.perf_counter()
        tags_b = run_batched()
        t_b = time.perf_counter() - t0
        t0 = time.perf_counter()
        tags_l = run_loop()
        t_l = time.perf_counter() - t0

        # decoder alone: identical emissions, one batched Viterbi vs one call per sentence
        b = collate_ner(encs, pad, with_labels=False)
        em = torch.cat(
            [
                model.emissions(
                    b["input_ids"][s : s + args.batch_size],
                    b["attention_mask"][s : s + args.batch_size],
                    b["unit_index"][s : s + args.batch_size],
                )
                for s in range(0, len(encs), args.batch_size)
            ]
        )
        mask = b["unit_mask"]
        t0 = time.perf_counter()
        dec_b = model.crf.decode(em, mask=mask)
        td_b = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec_l = [model.crf.decode(em[i : i + 1, : int(mask[i].sum())])[0] for i in range(len(encs))]
        td_l = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec_ref = model.crf.decode_reference(em, mask=mask)
        td_ref = time.perf_counter() - t0

    agree = sum(a == c for a, c in zip(tags_b, tags_l)) / len(tags_b)
    same_dec = sum(a == c for a, c in zip(dec_b, dec_l)) / len(dec_b)
    n = len(recs)
    print(f"sentences: {n} ({len(encs)} chunks) from {args.test}; model {args.model}; threads {args.threads}")
    print(f"batched (bs={args.batch_size}, length-sorted): {t_b:.2f}s  {n / t_b:.1f} sentences/s")
    print(f"per-sentence loop baseline:        {t_l:.2f}s  {n / t_l:.1f} sentences/s")
    print(
        f"CRF decode only: batched {td_b * 1000:.1f} ms vs loop {td_l * 1000:.1f} ms "
        f"(torchcrf's own batched decode: {td_ref * 1000:.1f} ms, same paths: {dec_ref == dec_b})"
    )
    print(f"identical predictions batched vs loop: {agree:.1%} of sentences (decoder alone: {same_dec:.1%})")
    print(f"sentences_per_s={n / t_b:.2f} speedup_vs_loop={t_l / t_b:.2f} decode_speedup={td_l / td_b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
