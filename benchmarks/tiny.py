"""Tiny digit scans (8x8, 17 grey levels, like UCI's / scikit-learn's load_digits): what the
models do to them, and what to do instead.

    python -m benchmarks.tiny [--models unet_scenes conv_denoiser] [--count 1000] [--mnist DIR]

MNIST *test* digits, padded to 32x32 and averaged over 4x4 blocks to 8x8 (as UCI counted the
set pixels of 4x4 blocks of 32x32 bitmaps), quantised to 17 levels; clean, and with Gaussian
noise (stored as 8-bit). Both polarities: light on dark (the numbers as stored) and dark on
light (as printed). Methods: "as is" (the model on the 8x8 image), "x28" / "x32" (bicubic up
to 28x28, the models' native size, or 32x32; the model; area back to 8x8), "left alone". For
each: mean PSNR against the clean 8x8, and the share of images made worse than the input.
"""

from __future__ import annotations

import argparse

import numpy as np

from denoise_cli.model.scale import resample
from denoise_cli.model.session import Denoiser


def tiny_digits(digits: np.ndarray) -> np.ndarray:
    """(N, 28, 28) in [0, 1] -> (N, 8, 8) block means, quantised to 17 levels (0..16)/16."""
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    blocks = padded.reshape(len(digits), 8, 4, 8, 4).mean(axis=(2, 4))
    return (np.round(blocks * 16) / 16).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, capped at 60 dB (an identical image)."""
    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(axis=1)
    return np.minimum(10 * np.log10(1.0 / np.maximum(mse, 1e-12)), 60.0)


def methods(denoiser: Denoiser) -> dict:
    policy = denoiser.leave_below, denoiser.resample_below

    def model(x: np.ndarray) -> np.ndarray:
        denoiser.leave_below = denoiser.resample_below = 0  # the model on whatever it gets
        try:
            return denoiser.denoise_group(x, "auto")
        finally:
            denoiser.leave_below, denoiser.resample_below = policy

    def scaled(size: int):  # bicubic up to size x size, the model, area back to x's side
        def run(x: np.ndarray) -> np.ndarray:
            up = np.clip(resample(x, size, size, "bicubic"), 0, 1)
            return resample(np.clip(model(up), 0, 1), *x.shape[1:], "area")

        return run

    def change(size: int):  # only the model's change, brought down, added to the input
        def run(x: np.ndarray) -> np.ndarray:
            up = np.clip(resample(x, size, size, "bicubic"), 0, 1)
            return x + resample(model(up) - up, *x.shape[1:], "area")

        return run

    return {
        "as is": model,
        "x28": scaled(28),
        "x32": scaled(32),
        "x28 change": change(28),
        "left alone": lambda x: x,
        "runtime (policy)": lambda x: denoiser.denoise_group(x, "auto"),
    }


def main() -> None:
    from denoise_train.mnist import load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet_scenes", "conv_denoiser"])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sigmas", nargs="+", type=float, default=[0.1, 0.2])
    parser.add_argument("--mnist", default=None, help="MNIST folder (default: the project's)")
    args = parser.parse_args()
    clean = tiny_digits(load_split("test", args.mnist, download=False)[0][: args.count, 0])
    rng = np.random.default_rng(0)
    sets = {"clean": clean}
    for sigma in args.sigmas:
        noisy = clean + rng.normal(0, sigma, clean.shape)
        sets[f"sigma {sigma}"] = (np.round(np.clip(noisy, 0, 1) * 255) / 255).astype(np.float32)
    print(f"{args.count} MNIST test digits as 8x8 scans, 17 levels; PSNR dB (share worse than")
    print("the input); input PSNR of a clean image is 60 (capped)")
    header = " | ".join(f"{name}" for name in sets)
    print(f"| model | polarity | method | {header} |")
    print("|---|---|---|" + "---:|" * len(sets))
    for model in args.models:
        denoiser = Denoiser(model, device="cpu")
        for polarity in ("light on dark", "dark on light"):
            flip = polarity == "dark on light"
            cells: dict[str, list[str]] = {}
            for images in sets.values():
                x = 1 - images if flip else images
                target = 1 - clean if flip else clean
                base = psnr(x, target)
                for method, run in methods(denoiser).items():
                    got = psnr(np.clip(run(x), 0, 1), target)
                    worse = np.mean(got < base - 0.01) * 100
                    cells.setdefault(method, []).append(f"{got.mean():.2f} ({worse:.0f}%)")
            for method, row in cells.items():
                print(f"| {model} | {polarity} | {method} | " + " | ".join(row) + " |")
    by_size(args.models, load_split("test", args.mnist, download=False)[0][: args.count, 0])


def by_size(models: list[str], digits: np.ndarray, sigmas: tuple[float, ...] = (0.1, 0.2)) -> None:
    """Where the thresholds go: the model as is, and through 28x28, on digits area-downsampled
    to each side (8-bit), clean and noisy, light on black and dark on grey paper."""
    rng = np.random.default_rng(1)
    print("\nDigits area-downsampled from 28x28 (8-bit); PSNR dB (share worse than the input)")
    names = ["clean"] + [f"sigma {s}" for s in sigmas]
    head = " | ".join(f"{n}: input | as is | x28 | runtime" for n in names)
    print(f"| model | digits | side | {head} |")
    print("|---|---|---:|" + "---:|" * 4 * len(names))
    for model in models:
        run = methods(Denoiser(model, device="cpu"))
        for paper in ("light on black", "dark on grey paper"):
            for side in (8, 10, 12, 13, 14, 16, 18, 20, 24, 28):
                clean = np.round(resample(digits, side, side, "area") * 255) / 255
                if paper != "light on black":
                    clean = np.round((0.85 - 0.7 * clean) * 255) / 255
                cells = []
                for sigma in (0.0, *sigmas):
                    noisy = clean + rng.normal(0, sigma, clean.shape) if sigma else clean
                    noisy = (np.round(np.clip(noisy, 0, 1) * 255) / 255).astype(np.float32)
                    base = psnr(noisy, clean)
                    cells.append(f"{base.mean():.2f}")
                    for method in ("as is", "x28", "runtime (policy)"):
                        got = psnr(np.clip(run[method](noisy), 0, 1), clean)
                        worse = np.mean(got < base - 0.01) * 100
                        cells.append(f"{got.mean():.2f} ({worse:.0f}%)")
                print(f"| {model} | {paper} | {side} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
