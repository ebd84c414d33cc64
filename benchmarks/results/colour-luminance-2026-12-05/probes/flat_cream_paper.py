import numpy as np, sys
from denoise_cli.model.session import Denoiser
from denoise_cli.files.chroma import luma
d = Denoiser(sys.argv[1], device="cpu", threads=1)
rng = np.random.default_rng(0)
for k in [0.9, 0.95, 1.0]:
    for s in [0.08, 0.12, 0.16]:
        base = np.array([0.96, 0.94, 0.86]) * k
        clean = np.broadcast_to(base, (16, 48, 160, 3))
        noisy = np.round(np.clip(clean + s * rng.standard_normal(clean.shape), 0, 1) * 255).astype(np.uint8)
        y = luma(noisy).astype(np.float32) / 255
        L = float(luma(np.round(np.array(base) * 255).astype(np.uint8)[None])[0]) / 255
        out = np.stack(d.denoise(list(y), invert="auto"))
        print(f"k {k} s {s} Y {L*255:.0f} | noisy {255*(y.mean()-L):+.2f} std {255*y.std():.1f} | out {255*(np.median(out)-L):+.2f}")
