"""Lines and halos at image edges: zero padding (before) against the mirrored border.

    python -m benchmarks.border [--models unet_scenes conv_denoiser] [--mnist DIR]

A model's convolutions pad with zeros, so a frame that is not black (in the model's polarity)
comes back with a line along it. Prints, per model and padding: the strongest 1-pixel line
(mean of an edge row or column minus the row 3 pixels in, in grey levels) on constant images
at several levels and on clean pages of digits (ink on grey paper, light on dark); PSNR of the
outer 3-pixel frame and of the interior on noisy pages; and the time to denoise 512 noisy
28x28 MNIST test digits (whose noisy black frames have median 0: no border under the rule).
Times are wall-clock on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from denoise_cli.model.polarity import needs_inversion_batch
from denoise_cli.model.session import Denoiser


def pages(digits: np.ndarray, paper: float, ink: float, first: int, count: int) -> np.ndarray:
    """`count` 84x84 pages of 3x3 digits, ink on paper."""
    out = []
    for k in range(first, first + count):
        d = digits[k * 9 : (k + 1) * 9].reshape(3, 3, 28, 28).transpose(0, 2, 1, 3)
        d = d.reshape(84, 84)
        out.append(paper * (1 - d) + ink * d)
    return np.stack(out).astype(np.float32)


def zero_padded(denoiser: Denoiser, images: np.ndarray) -> np.ndarray:
    """What the runtime did before: polarity as now, zeros to the size multiple, no border."""
    m = denoiser.info.size_multiple
    h, w = images.shape[1:]
    flips = needs_inversion_batch(images, "auto", denoiser.info.polarity)
    x = np.pad(images, ((0, 0), (0, -h % m), (0, -w % m)))
    x[flips] = 1 - x[flips]
    out = denoiser._run_batch(x[:, None])[:, 0, :h, :w]
    out[flips] = 1 - out[flips]
    return out


def line(out: np.ndarray) -> float:
    o = out * 255
    sides = [
        o[:, 0] - o[:, 3],
        o[:, -1] - o[:, -4],
        o[:, :, 0] - o[:, :, 3],
        o[:, :, -1] - o[:, :, -4],
    ]
    return float(max(np.abs(s.mean(axis=1)).max() for s in sides))


def frame_psnr(out: np.ndarray, clean: np.ndarray, width: int = 3) -> tuple[float, float]:
    frame = np.zeros(out.shape[1:], bool)
    frame[:width] = frame[-width:] = True
    frame[:, :width] = frame[:, -width:] = True
    err = (out - clean) ** 2
    return tuple(float(10 * np.log10(1 / err[:, m].mean())) for m in (frame, ~frame))


def main() -> None:
    from denoise_train.mnist import load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet_scenes", "conv_denoiser"])
    parser.add_argument("--mnist", default=None, help="MNIST folder (default: the project's)")
    args = parser.parse_args()
    digits = load_split("test", args.mnist, download=False)[0][:900, 0]
    rng = np.random.default_rng(0)
    levels = (0.05, 0.1, 0.15, 0.35, 0.5, 0.65, 0.85, 0.95)
    consts = np.stack([np.full((64, 64), v, np.float32) for v in levels])
    clean = np.concatenate([pages(digits, 0.82, 0.15, 0, 20), pages(digits, 0.1, 0.9, 20, 20)])
    noisy = np.clip(clean + rng.normal(0, 0.12, clean.shape), 0, 1).astype(np.float32)
    small = np.clip(digits[:512] + rng.normal(0, 0.3, (512, 28, 28)), 0, 1).astype(np.float32)
    print(
        "| model | padding | line, constant (levels) | line, clean pages | noisy pages: frame / "
        "interior PSNR dB | 512 noisy digits, ms |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for model in args.models:
        denoiser = Denoiser(model, device="cpu", threads=1)
        radius = denoiser.border
        ways = [("zeros (before)", None), ("mirrored, as the runtime now", radius)]
        for label, border in ways:
            if border is None:

                def run(x, d=denoiser):
                    return zero_padded(d, x)
            else:
                denoiser.border = border

                def run(x, d=denoiser):
                    return d.denoise_group(x)

            frame, inner = frame_psnr(run(noisy), clean)
            start = time.perf_counter()
            for _ in range(3):
                run(small)
            ms = (time.perf_counter() - start) / 3 * 1000
            print(
                f"| {model} | {label} | {line(run(consts)):.1f} | {line(run(clean)):.1f} "
                f"| {frame:.2f} / {inner:.2f} | {ms:.0f} |"
            )


if __name__ == "__main__":
    main()
