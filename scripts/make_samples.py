"""Write the bundled sample images: 24 MNIST test digits, clean and with Gaussian noise.

    python scripts/make_samples.py --data-dir ../shared/data/mnist

noisy/ holds 16 light-on-dark digits (as MNIST) and dark-on-light/ 8 inverted ones (as scans);
clean/ mirrors it, so `denoise-batch score` can compare. Noise: sigma 0.5, clipped, seeded.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL, add_noise
from denoise_train.mnist import load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="denoise_cli/samples")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    images, labels = load_split("test", args.data_dir)
    pick = np.random.default_rng(args.seed).choice(len(images), size=24, replace=False)
    clean = images[pick, 0]
    noisy = add_noise(clean, REFERENCE_KIND, REFERENCE_LEVEL, args.seed)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    for i, (c, n, label) in enumerate(zip(clean, noisy, labels[pick], strict=True)):
        sub = "" if i < 16 else "dark-on-light"
        if sub:
            c, n = 1.0 - c, 1.0 - n
        name = f"{i:02d}-digit{label}.png"
        for kind, img in (("clean", c), ("noisy", n)):
            path = out / kind / sub / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)
    print(f"wrote {len(pick)} clean and noisy samples under {out}")


if __name__ == "__main__":
    main()
