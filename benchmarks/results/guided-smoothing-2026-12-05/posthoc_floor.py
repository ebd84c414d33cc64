import numpy as np
from scipy import ndimage
from denoise_cli.model.session import Denoiser
from denoise_export import foreign
from denoise_train.mnist import load_split
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
den = Denoiser("/tmp/ev/unet_world33m/m.onnx", device="cpu", threads=1)
box = lambda x, r: ndimage.uniform_filter(x.astype(np.float64), 2 * r + 1, mode="nearest")
def gf(x, y, scale, F, mode):
    eps = (box(np.abs(x - y), 7) * scale) ** 2
    m = box(y, 2); v = np.maximum(box(y * y, 2) - m * m, 0)
    a = v / (v + eps + 1e-6) if mode == "old" else (v + F) / (v + F + eps)
    b = m - a * m
    return np.clip(box(a, 2) * y + box(b, 2), 0, 1)
psnr = lambda c, o: 10 * np.log10(1 / np.mean((c - o) ** 2))
for name in ("display", "print", "colour", "display-clean", "print-clean", "colour-clean"):
    fs = foreign.build_set(name, 60, digits, seed=7)
    clean = [foreign.luminance(s.clean) for s in fs.samples]; noisy = [foreign.luminance(s.noisy) for s in fs.samples]
    outs = den.denoise(noisy)
    base = np.mean([psnr(c, o) for c, o in zip(clean, outs)])
    row = [f"{name:14s} base {base:.2f}"]
    for label, sc, F, mode in (("old .313", 0.313, 0, "old"), ("F1e-4 .313", 0.313, 1e-4, "new"), ("F1e-4 .4", 0.4, 1e-4, "new"), ("F6e-5 .313", 0.313, 6.2e-5, "new")):
        row.append(f"{label}: {np.mean([psnr(c, gf(n, o, sc, F, mode)) for c, n, o in zip(clean, noisy, outs)]) - base:+.3f}")
    print("  ".join(row), flush=True)
