#!/usr/bin/env bash
# Train our stronger denoisers on the full MNIST training set, compare them with the seed
# models and classical filters, and export the chosen default. Usage:
#   scripts/train_strong_models.sh [MNIST_DIR]
# Needs the seed conv denoiser first (scripts/train_seed_models.sh) for the comparison.
set -euo pipefail
data_dir=${1:-${DENOISE_MNIST_DIR:-../shared/data/mnist}}
mkdir -p runs/ours
recipe=(--batch-size 64 --lr 2e-3 --lr-schedule cosine --data-dir "$data_dir")
denoise-train fit --arch unet_small --epochs 20 "${recipe[@]}" --out runs/ours/unet_small.pt
denoise-train fit --arch unet_small --epochs 40 "${recipe[@]}" --out runs/ours/unet_small_e40.pt
denoise-train fit --arch unet_small --epochs 20 --noise blind "${recipe[@]}" \
  --out runs/ours/unet_small_blind.pt
denoise-train compare runs/seed/dense_denoiser_16.pt runs/seed/conv_denoiser.pt \
  runs/ours/unet_small.pt runs/ours/unet_small_e40.pt runs/ours/unet_small_blind.pt \
  --data-dir "$data_dir" --out-dir docs/compare
denoise-train report runs/seed/*.pt runs/ours/*.pt --data-dir "$data_dir" --out-dir docs/report
