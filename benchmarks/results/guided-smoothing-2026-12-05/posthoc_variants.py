import numpy as np
from scipy import ndimage
from denoise_cli.model.session import Denoiser
from denoise_export import foreign
from denoise_train.mnist import load_split
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
den = Denoiser("/tmp/ev/unet_world33m/m.onnx", device="cpu", threads=1)
box = lambda x, r: ndimage.uniform_filter(x.astype(np.float64), 2 * r + 1, mode="nearest")
F = 1e-4
def filt(x, y, scale, kind, rn=7, r=2):
    eps = (box(np.abs(x - y), rn) * scale) ** 2
    m = box(y, r); v = np.maximum(box(y * y, r) - m * m, 0)
    a = (v + F) / (v + F + eps)
    if kind == "guided":
        b = m - a * m; return np.clip(box(a, r) * y + box(b, r), 0, 1)
    return np.clip(m + a * (y - m), 0, 1)  # Lee
psnr = lambda c, o: 10 * np.log10(1 / np.mean((c - o) ** 2))
for name in ("display", "print", "colour", "print-clean", "colour-clean"):
    fs = foreign.build_set(name, 60, digits, seed=7)
    clean = [foreign.luminance(s.clean) for s in fs.samples]; noisy = [foreign.luminance(s.noisy) for s in fs.samples]
    outs = den.denoise(noisy)
    base = np.mean([psnr(c, o) for c, o in zip(clean, outs)])
    row = [f"{name:13s} base {base:.2f}"]
    for label, sc, kind, rn, r in (("guided", .313, "guided", 7, 2), ("lee", .313, "lee", 7, 2), ("lee .45", .45, "lee", 7, 2), ("lee r1", .313, "lee", 7, 1), ("guided rn3", .313, "guided", 3, 2), ("lee rn3 .4", .4, "lee", 3, 2)):
        row.append(f"{label}: {np.mean([psnr(c, filt(n, o, sc, kind, rn, r)) for c, n, o in zip(clean, noisy, outs)]) - base:+.3f}")
    print("  ".join(row), flush=True)
