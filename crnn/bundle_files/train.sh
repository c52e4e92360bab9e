#!/usr/bin/env bash
# Train this bundle's model here, for a wall-clock budget: ./train.sh [MINUTES] [hydra overrides ...]
# Needs python3 with PyTorch, NumPy, OpenCV and Pillow; nothing else is installed or downloaded. Renders
# training lines on the fly (one loader worker per core but one), trains on CUDA with bf16 autocast when
# a GPU is visible (else on the CPU), saves runs/<name>/train/last.pt + last.state.pt every few minutes and
# at the end, and prints img/s and the loss curve. Bring runs/<name>/train/ back and continue at home with
#   make train EXP=<exp> ARGS="train.resume=true train.resume_from=<that folder>"
# STAGE=detect trains the bundle's text-line detector instead (made with DETECTOR=<experiment>), into
# runs/<name>/detect/train/; at home: make detect-train ARGS="detect.train.resume_from=<that folder>".
# Both at once share the cores: give each its WORKERS.
# Environment: PYTHON (default python3), BATCH (lines per step, default 256; pages crops for the detector,
# default 16), WORKERS (loader workers), STAGE (train or detect).
set -euo pipefail
cd "$(dirname "$0")"
MINUTES="${1:-30}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-python3}"
STAGE="${STAGE:-train}"
SITE="$(mktemp -d)"
trap 'rm -rf "$SITE"' EXIT
"$PY" unpack.py wheels "$SITE" fonts
CORES="$(nproc)"
WORKERS="${WORKERS:-$(( CORES > 2 ? CORES - 1 : 1 ))}"
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export CRNN_GIT_COMMIT="$(cat COMMIT)"
case "$STAGE" in
  train) MODULE=crnn.train; FILE=overrides.txt; KEY=train; BATCH="${BATCH:-256}" ;;
  detect) MODULE=crnn.detect.train; FILE=detect_overrides.txt; KEY=detect.train; BATCH="${BATCH:-16}"
    [ -f "$FILE" ] || { echo "[bundle] no detector in this bundle (make train-bundle ... DETECTOR=<experiment>)" >&2; exit 2; } ;;
  *) echo "[bundle] STAGE is train or detect, not $STAGE" >&2; exit 2 ;;
esac
mapfile -t OVERRIDES < "$FILE"
echo "[bundle] $STAGE: $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'), ${WORKERS} loader workers, batch ${BATCH}, ${MINUTES} min"
exec "$PY" -m "$MODULE" "${OVERRIDES[@]}" "$KEY.max_minutes=$MINUTES" "$KEY.num_workers=$WORKERS" \
    "$KEY.batch_size=$BATCH" "$@"
