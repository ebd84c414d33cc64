import numpy as np
from scipy import ndimage, special
from denoise_export.foreign import build_set, luminance
from denoise_export.foreign_eval import psnr
from denoise_cli.model.session import Denoiser
from denoise_cli.files.chroma import luma
from denoise_train.mnist import load_split
x, _ = load_split("test", "../shared/data/mnist")
d = Denoiser("denoise_cli/models/unet_world.onnx", device="cpu", threads=1)
SQ2 = np.sqrt(2)
def Phi(z): return 0.5 * special.erfc(-z / SQ2)
def phi(z): return np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
def sigma_of(v):
    a, b = v[:, :-1].astype(np.float64), v[:, 1:].astype(np.float64)
    ok = (a > 0) & (a < 255) & (b > 0) & (b < 255)
    if ok.sum() < 32: return 0.0
    dd = (b - a)[ok]
    return 1.4826 * np.median(np.abs(dd - np.median(dd))) / SQ2 / 255
def impute_rows(v, r):
    out = v.astype(np.float64) / 255
    for y in range(v.shape[0]):
        out[y] = impute(v[y:y+1], r, rowwise=True)[0]
    return out
def impute(v, r, rowwise=False):
    s = sigma_of(v)
    out = v.astype(np.float64) / 255
    if s <= 0: return out
    for side in (255, 0):
        clipped = (v == side)
        if not clipped.any(): continue
        size = (1, 2 * r + 1) if rowwise else 2 * r + 1
        p = ndimage.uniform_filter(clipped.astype(np.float64), size, mode="reflect")
        p = np.clip(p, 1e-6, 0.5)
        a = -special.ndtri(p)  # Phi^-1(1-p)
        excess = s * (phi(a) / np.maximum(1 - Phi(a), 1e-12) - a)
        out = np.where(clipped, out + (excess if side == 255 else -excess), out)
    return out
W = np.array([0.299, 0.587, 0.114])
for name in ["colour", "colour-clean"]:
    fs = build_set(name, 100, x.reshape(-1, 28, 28))
    for r in [None, 3, "row7", "row15"]:
        ins = []
        for s in fs.samples:
            v = np.round(s.noisy * 255).astype(np.uint8)
            if r is None:
                ins.append(luma(v).astype(np.float32) / 255)
            else:
                if isinstance(r, str):
                    rgb = np.stack([impute_rows(v[..., c], int(r[3:])) for c in range(3)], -1)
                else:
                    rgb = np.stack([impute(v[..., c], r) for c in range(3)], -1)
                ins.append(np.clip(np.round(rgb @ W * 255), 0, 255).astype(np.float32) / 255)
        out = d.denoise(ins, invert="auto")
        p = np.mean([psnr(luminance(s.clean), o) for s, o in zip(fs.samples, out)])
        sh = np.mean([np.median(o[s.background]) - np.median(luminance(s.clean)[s.background]) for s, o in zip(fs.samples, out)]) * 255
        print(name, r, f"{p:.3f} shift {sh:+.2f}", flush=True)
