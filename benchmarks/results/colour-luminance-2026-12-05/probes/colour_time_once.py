import numpy as np, time, sys
from pathlib import Path
import denoise_cli.files.images as I
import denoise_cli.files.chroma as CH
from denoise_cli.files.luminance import luma
from denoise_cli.files.luminance import unclipped_luma
from denoise_export.foreign import build_set
from denoise_export.foreign_eval import through_files
from denoise_train.mnist import load_split
x, _ = load_split("test", "../shared/data/mnist")
fs = build_set("colour", 100, x.reshape(-1, 28, 28))
M = Path("denoise_cli/models/unet_world.onnx")
ims = [s.noisy for s in fs.samples]
best = {}
for r in range(3):
    for name, fn in (("luma", luma), ("unclipped_luma", unclipped_luma)):
        I.unclipped_luma = fn
        CH.unclipped_luma = fn
        t = time.perf_counter(); through_files(M, ims, 1); dt = time.perf_counter() - t
        best[name] = min(best.get(name, 9e9), dt)
for k, v in best.items(): print(k, f"{v/len(ims)*1e3:.2f} ms/image")
