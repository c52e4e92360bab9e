#!/usr/bin/env bash
# One prepared GPU burst: the recognizer and the page-mode detector train at once from a training bundle
# made with both (make train-bundle EXP=zh_en_v2 BUNDLE=runs/gpu/bundle RESUME=... DETECTOR=det_zh_en
# DRESUME=...), and what comes back is packed into $OUT as seven files under 16 MiB each (the recognizer's
# state apart: with train.ema_decay it holds the moving average too, and with its weights would pass 16 MiB):
#   bash scripts/gpu_burst.sh runs/gpu/bundle 7          # on the GPU machine, bundle carried along
#   for t in rec rec.state; do tar xf $t.tar -C back/rec; done; tar xf det.tar -C back/det
#                                                         # here; then train.resume_from=back/rec ...
# A second call on the same machine resumes where the first stopped (the bundle's runs/ stay there).
# Environment: RW / DW loader workers (10 / 4 on 16 cores), RB / DB batch (256 lines / 16 crops), OUT.
set -uo pipefail
BUNDLE="${1:?the bundle folder}"
MIN="${2:-7}"
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
cd "$BUNDLE"
REC="runs/$(python3 -c 'import json; print(json.load(open("manifest.json"))["experiment"])')/train"
DET="runs/$(python3 -c 'import json; print(json.load(open("manifest.json"))["detector"]["experiment"])')/detect/train"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
STAGE=detect WORKERS="${DW:-4}" BATCH="${DB:-16}" ./train.sh "$MIN" detect.train.size=640 > det.log 2>&1 &
DPID=$!
sleep 20  # the detector's train.sh unpacks the fonts first
WORKERS="${RW:-10}" BATCH="${RB:-256}" ./train.sh "$MIN" > rec.log 2>&1
echo "recognizer rc $?" >> "$OUT/rc.txt"
wait "$DPID"
echo "detector rc $?" >> "$OUT/rc.txt"
# progress bars out, the summaries and loss curves kept
tr '\r' '\n' < rec.log | grep -v "step, img_s\|s/step\]$" | tail -c 60000 > "$OUT/rec.log"
tr '\r' '\n' < det.log | grep -v "crops_s=" | tail -c 60000 > "$OUT/det.log"
tar cf "$OUT/rec.tar" -C "$REC" last.pt best.pt metrics.jsonl summary.json
tar cf "$OUT/rec.state.tar" -C "$REC" last.state.pt
tar cf "$OUT/det.tar" -C "$DET" last.pt last.state.pt best.pt metrics.jsonl summary.json
ls -la "$OUT"
big=$(find "$OUT" -type f -size +16M)
if [ -n "$big" ]; then echo "over 16 MiB, will not come back: $big" | tee -a "$OUT/rc.txt"; exit 1; fi
