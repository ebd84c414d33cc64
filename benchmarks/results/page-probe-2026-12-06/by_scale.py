"""Page group probe: where does the default lose to unet_scenes? PSNR by digit scale and
error split by region (stroke, near stroke, far background), Gaussian 0.5, same noise."""
import sys
import numpy as np
from denoise_cli.core.noise import add_noise
from denoise_export.suite import onnx_runner
from denoise_train.mnist import load_split
from denoise_train.scenes import place, scaled
from scipy.ndimage import binary_dilation

models = {n: onnx_runner(p) for n, p in (a.split("=") for a in sys.argv[1:])}
digits = load_split("test", "../shared/data/mnist")[0][:2000, 0]
rng = np.random.default_rng(5)

def pages(scale, n):
    out = []
    for i in range(n):
        page = np.zeros((128, 128), np.float32)
        for k in range(3):
            d = scaled(digits[(3 * i + k) % len(digits)], scale if scale else float(rng.uniform(0.8, 1.5)))
            t, l = rng.integers(0, 128 - d.shape[0] + 1, 2)
            place(page, d, int(t), int(l))
        out.append(page)
    return np.stack(out)

for scale in (0.8, 1.0, 1.2, 1.5, None):
    clean = pages(scale, 150)
    noisy = add_noise(clean, "gaussian", 0.5, 11).astype(np.float32)
    stroke = clean > 0.1
    near = binary_dilation(stroke, iterations=3, axes=(1, 2)) & ~stroke
    far = ~(stroke | near)
    row = [f"scale {scale or 'mix'}"]
    for name, run in models.items():
        out = np.stack(run(list(noisy)))
        err = (out - clean) ** 2
        psnr = np.mean(-10 * np.log10(err.mean(axis=(1, 2))))
        parts = [err[m].sum() / err.size for m in (stroke, near, far)]
        row.append(f"{name} {psnr:.2f} dB (mse*1e4 stroke {parts[0]*1e4:.1f} near {parts[1]*1e4:.1f} far {parts[2]*1e4:.1f})")
    print(" | ".join(row), flush=True)
