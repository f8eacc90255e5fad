#!/usr/bin/env bash
# The GPU checks of docs/paper-scale.md as one prepared script, for a machine with a CUDA GPU.
#
# Needs: the XLM-R tokenizer at $KBIOXLM_SHARED/tokenizers/xlm-roberta-base (default ../shared),
# the shared data for the real records (else the demo's records are used), and for part 2
# `pip install -e '.[deepspeed]'`. Results (JSON per run, logs) go to $OUT (default
# /tmp/kbioxlm-gpu-run). Takes about 10 minutes on one H100/H200-class GPU (not yet measured).
#
# 1. benchmarks/gpu_pretrain.py at XLM-R-base size, batch 32 x 128 tokens: fp32 as the first
#    GPU run had it (no levers), fp32 (TF32) and bf16 with the levers, bf16 + torch.compile,
#    and bf16 at 512 tokens.
# 2. A short DeepSpeed ZeRO-2 run (base size, bf16) that saves at step 20 and stops, resumes
#    from the checkpoint and continues to step 40; an uninterrupted run to step 40 must end with
#    the same weight digest.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/kbioxlm-gpu-run}
mkdir -p "$OUT"
export TOKENIZERS_PARALLELISM=false
SHARED=${KBIOXLM_SHARED:-../shared}
TOK="$SHARED/tokenizers/xlm-roberta-base"
B=(python benchmarks/gpu_pretrain.py --size base --tokenizer "$TOK" --workdir "$OUT/work" --steps 40 --warmup 8)
LEVERS=(--set attn_implementation=sdpa --set dataloader_num_workers=1 --set length_bucketing=8)

echo "== 1. throughput at base size" | tee "$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt" || true
run() {  # name, args...
  local name=$1; shift
  "${B[@]}" --json "$OUT/$name.json" "$@" 2>"$OUT/$name.log" | tail -1 | sed "s/^/$name: /" | tee -a "$OUT/summary.txt"
}
run fp32-plain
run fp32-tf32-levers --tf32 "${LEVERS[@]}"
run bf16-levers --bf16 "${LEVERS[@]}"
run bf16-levers-compile --bf16 "${LEVERS[@]}" --set torch_compile=true
run bf16-levers-512 --bf16 "${LEVERS[@]}" --length 512 --batch 16

echo "== 2. DeepSpeed ZeRO-2: save, resume, continue" | tee -a "$OUT/summary.txt"
FILES=$(python -c "
import sys; sys.path.insert(0, 'benchmarks')
from pathlib import Path
import pretrain_records as pr
print(','.join(str(p) for ps in pr.build_records(Path('$OUT/work')).values() for p in ps))")
MC='{model_type: xlm-roberta, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, max_position_embeddings: 514, type_vocab_size: 1, layer_norm_eps: 1.0e-05}'
ds() {  # output_dir, extra key=value...
  local out=$1; shift
  accelerate launch --config_file configs/accelerate-deepspeed-zero2.yaml --num_processes 1 -m kbioxlm pretrain \
    --config configs/pretrain-tiny.yaml "model_config=$MC" "tokenizer=$TOK" "train_files=$FILES" "output_dir=$out" \
    max_steps=40 save_steps=20 eval_steps=20 per_device_train_batch_size=32 max_length=128 bf16=true \
    learning_rate=5e-5 warmup_steps=4 attn_implementation=sdpa report_to=none "$@" >>"$OUT/zero2.log" 2>&1
}
rm -rf "$OUT/zero2-split" "$OUT/zero2-full"
ds "$OUT/zero2-split" stop_at_step=20
ls "$OUT/zero2-split/checkpoints/checkpoint-20" | tee -a "$OUT/summary.txt"
ds "$OUT/zero2-split" resume_from_checkpoint=auto
ds "$OUT/zero2-full"
python - "$OUT" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a = json.loads((out / "zero2-split/kbioxlm_config.json").read_text())
b = json.loads((out / "zero2-full/kbioxlm_config.json").read_text())
same = a["rank_weight_digests"] == b["rank_weight_digests"]
print(f"zero2: split+resume step {a['global_step']}, uninterrupted step {b['global_step']}, identical weights: {same}")
print(f"zero2_resume_exact={int(same)}")
PY
