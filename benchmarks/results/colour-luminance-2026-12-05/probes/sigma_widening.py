import numpy as np, sys
from pathlib import Path
import denoise_cli.files.unclip as U
from denoise_export.foreign import build_set, luminance
from denoise_export.foreign_eval import through_files, psnr
from denoise_train.mnist import load_split
from tests.test_unclip import _paper
x, _ = load_split("test", "../shared/data/mnist")
fs = build_set("colour", 100, x.reshape(-1, 28, 28))
M = Path("denoise_cli/models/unet_world.onnx")
orig = U._truncation_table.__wrapped__()
flat_table = (orig[0], np.ones_like(orig[1]))
for label, table in [("corrected", orig), ("uncorrected", flat_table)]:
    U._truncation_table = lambda t=table: t
    out = through_files(M, [s.noisy for s in fs.samples], 1)
    L = np.mean([psnr(luminance(s.clean), luminance(o)) for s, o in zip(fs.samples, out)])
    sh = np.mean([np.median(luminance(o)[s.background]) - np.median(luminance(s.clean)[s.background]) for s, o in zip(fs.samples, out)]) * 255
    row = [f"foreign colour {L:.3f} shift {sh:+.2f}"]
    for sigma in [20., 30., 40.]:
        pairs = [_paper((48, 160), sigma, seed) for seed in range(20)]
        out = through_files(M, [n.astype(np.float32) / 255 for c, n in pairs], 1)
        cl = [c.astype(np.float32) / 255 for c, n in pairs]
        L = np.mean([psnr(luminance(c), luminance(o)) for c, o in zip(cl, out)])
        sh = np.mean([np.mean(luminance(o)[:10]) - np.mean(luminance(c)[:10]) for c, o in zip(cl, out)]) * 255
        row.append(f"flat s{sigma:.0f} {L:.2f} ({sh:+.2f})")
    print(label, " | ".join(row), flush=True)
