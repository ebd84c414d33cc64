import sys, numpy as np
from scipy import ndimage
from denoise_cli.model.session import Denoiser
from denoise_export import foreign
from denoise_export.foreign_eval import _sigma
from denoise_train.mnist import load_split
from denoise_train.world import world_batch

count = int(sys.argv[1])
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
den = Denoiser("/tmp/ev/unet_world32m/m.onnx", device="cpu", threads=1)
box = lambda x, r: ndimage.uniform_filter(x, 2 * r + 1, mode="reflect")

def guided(y, r, eps):
    m = box(y, r); v = box(y * y, r) - m * m
    a = v / (v + eps); b = m - a * m
    return box(a, r) * y + box(b, r)

def psnr(c, o):
    return 10 * np.log10(1 / max(np.mean((c - o) ** 2), 1e-10))

def mad(x):
    return 1.4826 * np.median(np.abs(x - np.median(x)))

def variants(n, o):
    res = n - o
    s_in, s_mad = _sigma(n), mad(res)
    loc = np.sqrt(np.pi / 2) * box(np.abs(res), 7)
    out = {}
    for k in (0.1, 0.2, 0.3):
        out[f"in k{k}"] = guided(o, 2, (k * s_in) ** 2)
        out[f"mad k{k}"] = guided(o, 2, (k * s_mad) ** 2)
        out[f"loc k{k}"] = guided(o, 2, (k * loc) ** 2)
    return out

def sets():
    for name in ("display", "print", "colour", "display-clean", "print-clean", "colour-clean"):
        fs = foreign.build_set(name, count, digits, seed=7)
        yield name, [foreign.luminance(s.clean) for s in fs.samples], [foreign.luminance(s.noisy) for s in fs.samples]
    rng = np.random.default_rng(3)
    d = digits[5000:5000 + count]
    for s in (0.5, 0.2):
        yield f"mnist G{s}", list(d), [np.clip(x + rng.normal(0, s, x.shape), 0, 1).astype(np.float32) for x in d]
    noisy, clean = world_batch(count, 64, digits[6000:7000], np.random.default_rng(11))
    yield "world 64", list(clean[:, 0]), list(noisy[:, 0])

for name, clean, noisy in sets():
    outs = den.denoise(noisy)
    base = np.mean([psnr(c, o) for c, o in zip(clean, outs)])
    acc = {}
    for c, n, o in zip(clean, noisy, outs):
        for k, v in variants(n, o).items():
            acc.setdefault(k, []).append(psnr(c, v))
    print(f"{name:14s} base {base:6.2f} " + " ".join(f"{k}:{np.mean(v) - base:+.2f}" for k, v in acc.items()), flush=True)
