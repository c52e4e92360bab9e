#!/usr/bin/env bash
# Issue 12, part 3, back here: what scripts/gpu_presets.sh brought back, read as it would serve. Unpacks each
# preset_<name>.tar, exports it (FP32 ONNX with parity), quantizes it (static QDQ INT8, the bundled model's
# recipe, written whether or not it qualifies) and reads every file beside the bundled model in one crnn.eval
# run on the synthetic test lines and the real lines, so the CER and ms per line of all of them are measured
# on the same machine in the same run:
#   make data EXP=zh_en     # the synthetic test lines, once
#   bash scripts/gpu_presets_eval.sh <folder with preset_*.tar> [tiny,small,mobile]
# Writes runs/gpu/back/<name>/ (the tar's files), runs/preset_<name>/{export,quantize}/ and
# runs/gpu/eval_presets/report.{md,json}.
set -euo pipefail
BACK="${1:?the folder with preset_<name>.tar}"
PRESETS="${2:-tiny,small,mobile}"
PY="${PY:-.venv/bin/python}"
ARTIFACTS=""
for p in ${PRESETS//,/ }; do
  mkdir -p "runs/gpu/back/$p"
  tar xf "$BACK/preset_$p.tar" -C "runs/gpu/back/$p"
  "$PY" -m crnn.export experiment=zh_en_v2 "name=preset_$p" "model=$p" "export.source=runs/gpu/back/$p/last.pt"
  "$PY" -m crnn.quantize experiment=zh_en_v2 "name=preset_$p" "model=$p" 'quantize.candidates=[static_qdq]' \
    quantize.allow_none=true
  ARTIFACTS+="'${p}_fp32=runs/preset_$p/export/model.onnx','${p}_int8=runs/preset_$p/quantize/candidates/static_qdq.onnx',"
done
"$PY" -m crnn.eval experiment=zh_en_v2 "eval.out_dir=$PWD/runs/gpu/eval_presets" \
  'eval.test_sets=[data/zh_en/test,../shared/realdev]' \
  "eval.artifacts=[${ARTIFACTS}'bundled_v2_int8=models/crnn_zh_en.int8.onnx']"
