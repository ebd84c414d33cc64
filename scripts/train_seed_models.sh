#!/usr/bin/env bash
# Train the six seed models with the seed recipe on the full MNIST training set, then write the
# report (figures + PSNR/SSIM table) into docs/report. Usage:
#   scripts/train_seed_models.sh [MNIST_DIR] [RUN_DIR]
set -euo pipefail
data_dir=${1:-${DENOISE_MNIST_DIR:-../shared/data/mnist}}
run_dir=${2:-runs/seed}
mkdir -p "$run_dir"
for arch in dense_ae_1 dense_ae_2 dense_ae_8 dense_ae_32 dense_denoiser_16 conv_denoiser; do
  denoise-train fit --arch "$arch" --data-dir "$data_dir" --out "$run_dir/$arch.pt" \
    2>&1 | tee "$run_dir/$arch.log"
done
denoise-export report "$run_dir"/*.pt --data-dir "$data_dir" --out-dir docs/report
