#!/usr/bin/env bash
# There, on the lent GPU machine (device tool, carry [".carry"]), from the repo root:
#   MINUTES=8 [PIPELINE=pipelines/train-stargan.yaml] bash pipelines/gpu/train.sh [--set k=v ...]
# Trains the default pipeline (or PIPELINE) on CUDA for MINUTES, the default from the shipped
# weights, then writes the best weights (float16, in 15 MiB parts), its card, log.csv and
# samples.png to $OUT.
# Here, with GEO2MAP_LOCAL=1 (the project's .venv, CPU), the same script checks itself:
#   GEO2MAP_LOCAL=1 MINUTES=0.5 OUT=/tmp/gpu-out bash pipelines/gpu/train.sh --set device=cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${GEO2MAP_LOCAL:-}" ]; then
  PY=.venv/bin/python
else
  PY=python3
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .carry/wheels/*.whl
  export PYTHONPATH=/tmp/site
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} GEO2MAP_DATA_ROOT=$PWD/.carry/data PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the folder to bring back}
mkdir -p "$OUT"
PIPELINE=${PIPELINE:-pipelines/train-default.yaml}
if [ "$PIPELINE" = pipelines/train-default.yaml ]; then
  # 4x the CPU batch (48 crops a step), the lr scaled by 2, 14 worker processes preparing batches
  SETS=(--set model.init_from=default --set train.steps="${STEPS:-4000}" --set optim.lr=0.001
        --set data.batch_scale=4 --set data.workers="${WORKERS:-14}")
else
  # the GAN pipelines (train-stargan, train-unit, train-cyclegan): 4x their Moscow and
  # LandCover.ai crops a step; their schedules as the YAML says unless STEPS is given
  SETS=(--set data.moscow_batch=8 --set data.landcover_batch=8 ${STEPS:+--set train.steps=$STEPS})
fi
$PY -m geo2map.train.device_run "$PIPELINE" --minutes "${MINUTES:-8}" --out "$OUT" \
  --run-dir "runs/device-$(basename "$PIPELINE" .yaml)" \
  "${SETS[@]}" --set threads=4 --set train.val_every=500 --set train.checkpoint_every=500 \
  "$@" 2>&1 | tee "$OUT/train.log"
