#!/usr/bin/env bash
# The bundled scene models, trained on scenes (train/scenes.py: strings, 0.7-4x scales, pages,
# printed digits, blank paper, plain MNIST frames every third step) with the mixed noise
# (Gaussian 0.05-0.75, salt-and-pepper, speckle, Poisson, per image): 40 epochs of 1,000 steps.
#   unet_lite_near (default ARCH) -> unet_scenes, the default model: ~4 min an epoch on 2 AVX2
#     cores (~2.7 h)
#   unet_wide_near -> unet_scenes_wide, the opt-in quality model (3x the multiply-adds):
#     ~4 min an epoch on an idle 2-core AVX2 VM (~2.7 h)
# Any other registered ARCH trains with the same recipe into runs/scenes/ARCH.pt, not exported.
# Every epoch checkpoints; run it again and it resumes from the last finished epoch. The last
# step exports the bundled file and its INT8 variant (portable profile: no onnxruntime-only
# rewrite applies to it).
# Usage: scripts/train_scene_model.sh [MNIST_DIR] [ARCH]
set -euo pipefail
data_dir=${1:-${DENOISE_MNIST_DIR:-../shared/data/mnist}}
arch=${2:-unet_lite_near}
case "$arch" in
  unet_lite_near) ckpt=runs/scenes/unet_scenes.pt bundled=unet_scenes ;;
  unet_wide_near) ckpt=runs/scenes/unet_wide_near.pt bundled=unet_scenes_wide ;;
  *) ckpt=runs/scenes/$arch.pt bundled= ;;
esac
resume=()
[ -f "$ckpt" ] && resume=(--resume "$ckpt")
denoise-train fit --arch "$arch" --data scenes --noise mixed --epochs 40 \
  --steps-per-epoch 1000 --batch-size 32 --lr 2e-3 --lr-schedule cosine \
  --data-dir "$data_dir" --out "$ckpt" ${resume[@]+"${resume[@]}"}
if [ -n "$bundled" ]; then
  denoise-export "$ckpt" -o "denoise_cli/models/$bundled.onnx" --int8 --data-dir "$data_dir" \
    --runtimes none
fi
