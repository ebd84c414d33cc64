#!/usr/bin/env bash
# Issue 18's capacity point: unet_wide_near (unet_ctx's widths 16-32-96, 332k parameters,
# ~3x unet_scenes' multiply-adds) trained with exactly unet_scenes' recipe (same scenes, mixed
# noise, 40 epochs x 1,000 steps, Adam 2e-3 cosine), so its validation curve can be read
# against unet_scenes' epoch by epoch (runs/scenes/train-session*.log). Every epoch
# checkpoints; run it again and it resumes from the last finished epoch.
# Usage: scripts/train_wide_scene_model.sh [MNIST_DIR]
set -euo pipefail
data_dir=${1:-${DENOISE_MNIST_DIR:-../shared/data/mnist}}
ckpt=runs/scenes_wide/unet_wide_near.pt
resume=()
[ -f "$ckpt" ] && resume=(--resume "$ckpt")
denoise-train fit --arch unet_wide_near --data scenes --noise mixed --epochs 40 \
  --steps-per-epoch 1000 --batch-size 32 --lr 2e-3 --lr-schedule cosine \
  --data-dir "$data_dir" --out "$ckpt" "${resume[@]}"
