#!/usr/bin/env bash
# The default model of the wide world (issue 25): unet_lite_near fine-tuned from unet_scenes on
# train/world.py (paper, displays, print in many typefaces, forms, either polarity, Gaussian,
# Poisson-Gaussian, impulse, speckle and JPEG noise, a share left clean), with plain MNIST
# frames under the mixed noise every third step so the reference holds. 24 epochs of 1,000
# steps, cosine from 1e-3, batch norm frozen (its statistics from the scenes); ~2.6 min an epoch on one AVX-512 core (--threads 1, so a second
# core stays free for other work). Every epoch checkpoints; run it again and it resumes.
# The last step exports the bundled default and its INT8 variant.
# Usage: scripts/train_world_model.sh [MNIST_DIR] [THREADS]
set -euo pipefail
data_dir=${1:-${DENOISE_MNIST_DIR:-../shared/data/mnist}}
threads=${2:-1}
ckpt=runs/world/unet_world.pt
resume=()
[ -f "$ckpt" ] && resume=(--resume "$ckpt")
mkdir -p runs/world
denoise-train fit --arch unet_lite_near --data world --noise mixed --epochs 24 \
  --steps-per-epoch 1000 --batch-size 32 --lr 1e-3 --lr-schedule cosine \
  --init-from runs/scenes/unet_scenes.pt --freeze-bn --threads "$threads" \
  --data-dir "$data_dir" --out "$ckpt" ${resume[@]+"${resume[@]}"}
denoise-export "$ckpt" -o denoise_cli/models/unet_world.onnx --int8 --data-dir "$data_dir" \
  --runtimes none
