"""How to put a colour image back together around a denoised luminance: measured, not guessed.

    python -m benchmarks.colour [--model NAME] [--count 300] [--mnist DIR]

MNIST *test* digits drawn as coloured ink (blue, red, green) on tinted paper, clean and with
Gaussian noise on each channel, are denoised on their luminance by the model (as the runtime
does: clipped channels restored first, files/luminance.py), then recoloured: the runtime's
guided chroma filter (chroma.recolor), adding the luminance change to R, G and B (the same as
replacing Y in YCbCr, unrounded), scaling R, G and B by the luminance ratio, and Pillow's 8-bit
YCbCr round trip with Y replaced ("input": the image as it came). Prints RGB PSNR against the
clean image, the mean Cb/Cr error in 8-bit levels and the ink's hue error in degrees.
"""

from __future__ import annotations

import argparse
import colorsys

import numpy as np
from PIL import Image

from denoise_cli.files.chroma import recolor
from denoise_cli.files.luminance import luma, unclipped_luma
from denoise_cli.model.session import Denoiser

INKS = {"blue": (30, 60, 200), "red": (200, 30, 40), "green": (20, 140, 60)}
PAPER = (238, 232, 214)


def coloured(digits: np.ndarray, ink: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W) strokes in [0, 1] as float RGB in [0, 255]: ink on paper."""
    d = digits[..., None]
    return np.asarray(PAPER, np.float32) * (1 - d) + np.asarray(ink, np.float32) * d


def chroma(rgb: np.ndarray) -> np.ndarray:
    """(..., 2) Cb, Cr (ITU-R BT.601, full range) of float RGB in [0, 255]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([0.564 * (b - y), 0.713 * (r - y)], axis=-1)


def hue(rgb: np.ndarray) -> np.ndarray:
    flat = rgb.reshape(-1, 3) / 255.0
    return np.array([colorsys.rgb_to_hsv(*p)[0] * 360 for p in flat])


def rebuild(method: str, rgb8: np.ndarray, out8: np.ndarray) -> np.ndarray:
    """The output image (N, H, W, 3) uint8 from the input's RGB and the denoised luminance."""
    if method == "guided":
        return np.stack([recolor(o, c) for o, c in zip(out8, rgb8, strict=True)])
    if method == "add":
        change = out8.astype(np.int16) - luma(rgb8)
        return np.clip(rgb8 + change[..., None], 0, 255).astype(np.uint8)
    if method == "input":  # the image as it came, for reference
        return rgb8
    if method == "ratio":
        y_in = np.maximum(luma(rgb8).astype(np.float32), 1.0)
        scaled = rgb8 * (out8.astype(np.float32) / y_in)[..., None]
        return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    outs = []
    for o, c in zip(out8, rgb8, strict=True):
        _, cb, cr = Image.fromarray(c).convert("YCbCr").split()
        outs.append(np.asarray(Image.merge("YCbCr", (Image.fromarray(o), cb, cr)).convert("RGB")))
    return np.stack(outs)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def main() -> None:
    from denoise_train.mnist import load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_scenes")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--mnist", default=None, help="MNIST folder (default: the project's)")
    parser.add_argument("--sigma", type=float, default=0.15, help="noise, per channel, 0..1")
    args = parser.parse_args()
    digits = load_split("test", args.mnist, download=False)[0][: args.count, 0]
    denoiser = Denoiser(args.model, device="cpu")
    rng = np.random.default_rng(0)
    print(f"model {args.model}, {args.count} MNIST test digits per ink, noise sigma {args.sigma}")
    print("| ink | input | method | RGB PSNR dB | chroma error (levels) | ink hue error (deg) |")
    print("|---|---|---|---:|---:|---:|")
    for name, ink in INKS.items():
        clean = coloured(digits, ink)
        noise = rng.normal(0, args.sigma * 255, clean.shape)
        for kind, src in (("clean", clean), ("noisy", clean + noise)):
            rgb8 = np.clip(np.round(src), 0, 255).astype(np.uint8)
            gray = unclipped_luma(rgb8).astype(np.float32) / 255  # as the runtime's decoder
            out = denoiser.denoise_group(gray, "auto")
            out8 = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
            ink_px = digits > 0.7
            for method in ("input", "guided", "add", "ratio", "ycbcr8"):
                got = rebuild(method, rgb8, out8)
                err = np.abs(chroma(got.astype(np.float64)) - chroma(clean)).mean()
                dh = np.abs(hue(got[ink_px][:2000].astype(np.float64)) - hue(clean[ink_px][:2000]))
                dh = np.minimum(dh, 360 - dh).mean()
                print(
                    f"| {name} | {kind} | {method} | {psnr(got, clean):.2f} | {err:.2f} "
                    f"| {dh:.1f} |"
                )


if __name__ == "__main__":
    main()
