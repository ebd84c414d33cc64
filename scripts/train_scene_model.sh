#!/usr/bin/env bash
# The bundled default model, unet_scenes: unet_lite_near trained on scenes
# (train/scenes.py: strings, 0.7-4x scales, pages, printed digits, blank paper, plain MNIST
# frames every third step) with the mixed noise (Gaussian 0.05-0.75, salt-and-pepper, speckle,
# Poisson, per image). 40 epochs of 1,000 steps, ~4 min an epoch on 2 AVX2 cores (~2.7 h).
# Every epoch checkpoints; run it again and it resumes from the last finished epoch. The last
# step exports the bundled file (portable profile: no onnxruntime-only rewrite applies to it).
# ARCH trains another registered architecture with the same recipe into runs/scenes/ARCH.pt,
# not exported (unet_wide_near: issue 18's capacity point, ~5-8 min an epoch).
# Usage: scripts/train_scene_model.sh [MNIST_DIR] [ARCH]
set -euo pipefail
data_dir=${1:-${DENOISE_MNIST_DIR:-../shared/data/mnist}}
arch=${2:-unet_lite_near}
ckpt=runs/scenes/unet_scenes.pt
[ "$arch" = unet_lite_near ] || ckpt=runs/scenes/$arch.pt
resume=()
[ -f "$ckpt" ] && resume=(--resume "$ckpt")
denoise-train fit --arch "$arch" --data scenes --noise mixed --epochs 40 \
  --steps-per-epoch 1000 --batch-size 32 --lr 2e-3 --lr-schedule cosine \
  --data-dir "$data_dir" --out "$ckpt" "${resume[@]}"
if [ "$arch" = unet_lite_near ]; then
  denoise-export "$ckpt" -o denoise_cli/models/unet_scenes.onnx --data-dir "$data_dir" --runtimes none
fi
