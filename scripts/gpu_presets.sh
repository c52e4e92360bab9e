#!/usr/bin/env bash
# Issue 12, part 3: accuracy per training hour of the presets, measured on a GPU machine from one training
# bundle. Each preset trains from scratch in turn, for the same wall-clock minutes, on the same rendered line
# stream and the same rate schedule (one cosine horizon fixed up front, so every preset is at the same point
# of it after the same number of steps). What comes back is packed into $OUT as preset_<name>.tar (last.pt,
# summary.json, metrics.jsonl; the small preset's fp32 weights are 14 MB, under the 16 MiB a file may have)
# and preset_<name>.log:
#   make train-bundle EXP=zh_en_v2 BUNDLE=runs/gpu/presets RESUME=models/snapshots/crnn_zh_en_v2.pt  # 41 MiB
#   VAL_EVERY=200 bash scripts/gpu_presets.sh runs/gpu/presets 2.6 tiny,small,mobile   # there: 2.6 min each, < 10 in all
#   bash scripts/gpu_presets_eval.sh <folder it came back in>      # here: export, INT8, one crnn.eval run
# Rehearse on a copy of the bundle: train.sh unpacks its xz fonts in place, and the folder then weighs 74 MB,
# over the 64 MiB a device run may carry.
# The bundle's checkpoint is not used: train.init_from and the resume are turned off for every preset.
# Environment: RW loader workers (15 on 16 cores), RB lines per step (128), HORIZON steps (3000), WARMUP steps
# (300), LR peak rate (0.002, v1's from-scratch rate), VAL_EVERY steps between validations (100: the learning
# curve of each preset), OUT.
# Measured on an H100 (2026-12-05), 2.6 min each, VAL_EVERY=200, with the bundle's unused checkpoint deleted
# (runs/zh_en_v2/train/last.pt: bundle and checkout then fit the 64 MiB a device run carries): tiny 3,000 steps,
# small 2,420, mobile 2,620; validation CER 25.6 / 31.2 / 23.6 % (README, Presets). Before that, on an H200
# (session 30), with v2's fine-tuning rate 1e-3 at 256 lines per step: 600 steps left every preset at 100 %
# CER, and at 1,400 steps (358,400 lines, 2.8-3.0 min each) tiny read validation at 81 % and mobile at 93 %.
# CTC from scratch first learns to emit characters after about 1,000 steps, and steps, not lines, set when:
# hence v1's rate and smaller batches (the loader renders about 2,000 lines/s there).
set -uo pipefail
BUNDLE="${1:?the bundle folder}"
MIN="${2:-3}"
PRESETS="${3:-tiny,small,mobile}"
OUT="${OUT:-/tmp/out}"
HORIZON="${HORIZON:-3000}"
LR="${LR:-0.002}"
WARMUP="${WARMUP:-300}"
VAL_EVERY="${VAL_EVERY:-100}"
mkdir -p "$OUT"
cd "$BUNDLE"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
for p in ${PRESETS//,/ }; do
  RUN="runs/preset_$p/train"
  WORKERS="${RW:-15}" BATCH="${RB:-128}" ./train.sh "$MIN" "model=$p" "name=preset_$p" \
    train.resume=false train.resume_from=null train.init_from=null train.ema_decay=0 \
    "train.max_steps=$HORIZON" "train.lr=$LR" "train.warmup_steps=$WARMUP" "train.val_every=$VAL_EVERY" "mlflow.metrics_file=$RUN/metrics.jsonl" \
    > "preset_$p.log" 2>&1
  echo "$p rc $?" >> "$OUT/rc.txt"
  tr '\r' '\n' < "preset_$p.log" | grep -v "step, img_s\|s/step\]$" | tail -c 30000 > "$OUT/preset_$p.log"
  tar cf "$OUT/preset_$p.tar" -C "$RUN" last.pt summary.json metrics.jsonl || echo "$p: nothing to pack" >> "$OUT/rc.txt"
done
ls -la "$OUT"
big=$(find "$OUT" -type f -size +16M)
if [ -n "$big" ]; then echo "over 16 MiB, will not come back: $big" | tee -a "$OUT/rc.txt"; exit 1; fi
