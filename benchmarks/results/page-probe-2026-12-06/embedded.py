"""Does the default's lead on single 28x28 frames come from the frame's border? The same
noisy digits scored as frames and embedded in a larger noisy black canvas (centre 28x28
scored), Gaussian 0.5, default against unet_scenes."""
import sys
import numpy as np
from denoise_cli.core.noise import add_noise
from denoise_export.suite import onnx_runner
from denoise_train.mnist import load_split

models = {n: onnx_runner(p) for n, p in (a.split("=") for a in sys.argv[1:])}
clean = load_split("test", "../shared/data/mnist")[0][:400, 0]
for side in (28, 36, 44, 64, 128):
    canvas = np.zeros((len(clean), side, side), np.float32)
    o = (side - 28) // 2
    canvas[:, o : o + 28, o : o + 28] = clean
    noisy = add_noise(canvas, "gaussian", 0.5, 3).astype(np.float32)
    row = [f"side {side}"]
    for name, run in models.items():
        out = np.stack(run(list(noisy)))[:, o : o + 28, o : o + 28]
        mse = ((out - clean) ** 2).mean(axis=(1, 2))
        row.append(f"{name} {np.mean(-10 * np.log10(mse)):.2f}")
    print(" | ".join(row), flush=True)
