import numpy as np, io, tempfile
from pathlib import Path
from PIL import Image
import denoise_cli.files.images as I
import denoise_cli.files.chroma as CH
from denoise_cli.files.luminance import luma, unclipped_luma
from denoise_export.foreign import build_set, luminance
from denoise_export.foreign_eval import psnr
from denoise_cli.run.job import Denoise, Job
from denoise_cli.run.runners import denoise_tree
from denoise_train.mnist import load_split
x, _ = load_split("test", "../shared/data/mnist")
fs = build_set("colour", 60, x.reshape(-1, 28, 28))
def run(images, q):
    with tempfile.TemporaryDirectory() as t:
        src, dst = Path(t, "in"), Path(t, "out"); src.mkdir()
        for i, im in enumerate(images):
            Image.fromarray(np.round(np.clip(im, 0, 1) * 255).astype(np.uint8)).save(src / f"{i:03d}.jpg", quality=q)
        denoise_tree(src, dst, Job(Denoise(model="denoise_cli/models/unet_world.onnx", device="cpu"), workers=1, threads=1))
        return [np.asarray(Image.open(dst / f"{i:03d}.jpg").convert("RGB"), np.float32) / 255 for i in range(len(images))]
for q in (90, 75):
    for name, fn in (("plain", luma), ("restored", unclipped_luma)):
        I.unclipped_luma = fn; CH.unclipped_luma = fn
        out = run([s.noisy for s in fs.samples], q)
        p = np.mean([psnr(luminance(s.clean), luminance(o)) for s, o in zip(fs.samples, out)])
        sh = np.mean([np.median(luminance(o)[s.background]) - np.median(luminance(s.clean)[s.background]) for s, o in zip(fs.samples, out)]) * 255
        print(f"jpeg q{q} {name}: {p:.2f} dB, paper {sh:+.2f}", flush=True)
