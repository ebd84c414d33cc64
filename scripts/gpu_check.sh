#!/usr/bin/env bash
# One-shot GPU check (about 5 minutes of machine time): on a machine with an NVIDIA GPU, install
# onnxruntime-gpu (from carried wheels when the machine cannot reach an index), then run the
# benchmark suite's gpu section (torch CUDA vs onnxruntime's CUDA provider with IO binding), its
# model section and its folder section (denoise-batch picks CUDA by itself: --device auto), and
# write the results under benchmarks/results/gpu/. Without a GPU it says so and exits 0.
#
# Usage: scripts/gpu_check.sh [WHEEL_DIR]   (WHEEL_DIR: onnxruntime-gpu and its wheels; default:
#        shared/wheels if present, else the package index)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi missing or lists none); nothing measured"
  exit 0
fi
nvidia-smi -L
wheels=${1:-shared/wheels}
venv=${GPU_VENV:-/tmp/denoise-gpu-venv}
# The machine's own torch (with CUDA) is reused: --system-site-packages, no torch download.
python3 -m venv --system-site-packages "$venv"
if [ -d "$wheels" ]; then
  "$venv/bin/pip" install -q --no-index --find-links "$wheels" onnxruntime-gpu
else
  "$venv/bin/pip" install -q onnxruntime-gpu
fi
"$venv/bin/pip" install -q --no-deps -e .
"$venv/bin/python" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
"$venv/bin/python" -m benchmarks.run --sections gpu,model,folder --files 10000 --rounds 3 \
  --out benchmarks/results/gpu
