#!/usr/bin/env bash
# Train this bundle's model here, for a wall-clock budget: ./train.sh [MINUTES] [hydra overrides ...]
# Needs python3 with PyTorch, NumPy, OpenCV and Pillow; nothing else is installed or downloaded. Renders
# training lines on the fly (one loader worker per core but one), trains on CUDA with bf16 autocast when
# a GPU is visible (else on the CPU), saves runs/<name>/train/last.pt + last.state.pt every few minutes and
# at the end, and prints img/s and the loss curve. Bring runs/<name>/train/ back and continue at home with
#   make train EXP=<exp> ARGS="train.resume=true train.resume_from=<that folder>"
# Environment: PYTHON (default python3), BATCH (lines per step, default 256), WORKERS (loader workers).
set -euo pipefail
cd "$(dirname "$0")"
MINUTES="${1:-30}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-python3}"
SITE="$(mktemp -d)"
trap 'rm -rf "$SITE"' EXIT
"$PY" unpack.py wheels "$SITE" fonts
CORES="$(nproc)"
WORKERS="${WORKERS:-$(( CORES > 2 ? CORES - 1 : 1 ))}"
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export CRNN_GIT_COMMIT="$(cat COMMIT)"
mapfile -t OVERRIDES < overrides.txt
echo "[bundle] $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'), ${WORKERS} loader workers, batch ${BATCH:-256}, ${MINUTES} min"
exec "$PY" -m crnn.train "${OVERRIDES[@]}" train.max_minutes="$MINUTES" train.num_workers="$WORKERS" \
    train.batch_size="${BATCH:-256}" "$@"
