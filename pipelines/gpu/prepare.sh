#!/usr/bin/env bash
# Here, before a session's GPU call: pack the default pipeline's data and the wheels the GPU
# machine lacks into .carry/ (ignored by git; the device tool carries it: carry [".carry"]).
# The working tree that travels is 64 MiB in all, the shipped weights (~25 MB) included, so
# the data gets ~32 MiB: every validation file, the smaller sources whole, and as many Moscow
# training pairs as fit (geo2map/train/pack.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
PIPELINE=${1:-pipelines/train-default.yaml}
rm -rf .carry/data
.venv/bin/geo2map pack-data "$PIPELINE" --out .carry/data --max-mb "${MAX_MB:-32}"
# the GPU image has torch, timm, huggingface-hub, safetensors, scikit-image, PyYAML, tqdm and
# Pillow for its Python 3.12, but not these
mkdir -p .carry/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .carry/wheels segmentation_models_pytorch==0.6.0 pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
du -sh .carry
git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "tracked files: %.1f MiB\n", $1 / 2^20}'
