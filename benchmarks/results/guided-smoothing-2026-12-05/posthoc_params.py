"""Does a noise-adaptive smoothing of flat regions after the model help? Tune on seed 7 sets."""
import sys, time, numpy as np
from scipy import ndimage
from denoise_cli.model.session import Denoiser
from denoise_export import foreign
from denoise_export.foreign_eval import _sigma
from denoise_train.mnist import load_split

seed = int(sys.argv[1]); count = int(sys.argv[2])
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
den = Denoiser("/tmp/ev/unet_world32m/m.onnx", device="cpu", threads=1)

def box(x, r):
    return ndimage.uniform_filter(x, 2 * r + 1, mode="reflect")

def guided_self(y, r, eps):
    m = box(y, r); v = box(y * y, r) - m * m
    a = v / (v + eps); b = m - a * m
    return box(a, r) * y + box(b, r)

def psnr(c, o):
    return 10 * np.log10(1 / max(np.mean((c - o) ** 2), 1e-10))

for name in ("display", "print", "colour", "display-clean", "print-clean"):
    fs = foreign.build_set(name, count, digits, seed=seed)
    clean = [foreign.luminance(s.clean) for s in fs.samples]
    noisy = [foreign.luminance(s.noisy) for s in fs.samples]
    outs = den.denoise(noisy)
    sig = [_sigma(n) for n in noisy]
    base = np.mean([psnr(c, o) for c, o in zip(clean, outs)])
    # split of the error: background (mask) vs the rest
    bg = [s.background for s in fs.samples]
    e_bg = np.mean([np.sum(((c - o) ** 2)[b]) / c.size for c, o, b in zip(clean, outs, bg)])
    e_all = np.mean([np.mean((c - o) ** 2) for c, o in zip(clean, outs)])
    print(f"{name}: base {base:.2f}  bg share of MSE {e_bg / e_all:.2f}  sigma median {np.median(sig):.3f}", flush=True)
    for r in (2, 4, 8):
        row = []
        for k in (0.05, 0.1, 0.2, 0.4):
            got = np.mean([psnr(c, guided_self(o, r, (k * s) ** 2)) for c, o, s in zip(clean, outs, sig)])
            row.append(f"k{k}:{got - base:+.3f}")
        print(f"  r{r} " + " ".join(row), flush=True)
